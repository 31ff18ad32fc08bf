package fsmap

import (
	"context"
	"fmt"
	"io"
)

// moveChunk bounds the buffer of MoveUp and WriteZeros.
const moveChunk = 4 << 20

// ReadWriterAt is byte access for growers that move data in place.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// MoveUp copies n bytes from src to dst >= src within v, last piece first,
// so that overlapping ranges come out right. Growers use it to shift a
// data region when the tables before it grow.
func MoveUp(ctx context.Context, v ReadWriterAt, src, dst, n int64, what string) error {
	if dst == src || n <= 0 {
		return nil
	}
	if dst < src {
		return fmt.Errorf("move %d bytes from %d down to %d: only upward moves are safe", n, src, dst)
	}
	buf := make([]byte, min(n, moveChunk))
	for end := n; end > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := min(int64(len(buf)), end)
		end -= c
		if err := ReadFull(v, buf[:c], src+end, what); err != nil {
			return err
		}
		if _, err := v.WriteAt(buf[:c], dst+end); err != nil {
			return fmt.Errorf("write %d bytes of %s at %d: %w", c, what, dst+end, err)
		}
	}
	return nil
}

// WriteZeros writes n zero bytes at off.
func WriteZeros(ctx context.Context, v io.WriterAt, off, n int64) error {
	if n <= 0 {
		return nil
	}
	buf := make([]byte, min(n, moveChunk))
	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := min(int64(len(buf)), n-done)
		if _, err := v.WriteAt(buf[:c], off+done); err != nil {
			return fmt.Errorf("write zeros at %d: %w", off+done, err)
		}
		done += c
	}
	return nil
}

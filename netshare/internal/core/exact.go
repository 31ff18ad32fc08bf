package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ExactReader passes exactly the size bytes Save was promised from a
// reader and fails when the reader holds fewer or more, or ctx ends. The
// last bytes are withheld when the reader turns out to hold more: a client
// filling a buffer with io.ReadFull ignores an error that comes with data.
type ExactReader struct {
	ctx  context.Context
	r    io.Reader
	name string
	size int64
	left int64
	err  error
}

// NewExactReader reads size bytes of object name from r.
func NewExactReader(ctx context.Context, r io.Reader, name string, size int64) *ExactReader {
	return &ExactReader{ctx: ctx, r: r, name: name, size: size, left: size}
}

// Err returns the first failure, nil while there is none.
func (e *ExactReader) Err() error { return e.err }

// Sent returns how many bytes have been read.
func (e *ExactReader) Sent() int64 { return e.size - e.left }

func (e *ExactReader) fail(err error) error {
	if e.err == nil {
		e.err = err
	}
	return e.err
}

// Read implements io.Reader.
func (e *ExactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if err := e.ctx.Err(); err != nil {
		return 0, e.fail(err)
	}
	if e.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case err == io.EOF && e.left > 0:
		return n, e.fail(Permanent(fmt.Errorf("save %q: reader ended after %d of %d bytes: %w", e.name, e.size-e.left, e.size, io.ErrUnexpectedEOF)))
	case err != nil && err != io.EOF:
		return n, e.fail(err)
	}
	if e.left == 0 {
		var extra [1]byte
		k, err := io.ReadFull(e.r, extra[:])
		if k > 0 {
			return 0, e.fail(Permanent(fmt.Errorf("save %q: reader holds more than the %d bytes announced", e.name, e.size)))
		}
		if err != nil && err != io.EOF {
			return 0, e.fail(err)
		}
	}
	return n, nil
}

// CheckDirPath checks the directory a location names inside a share:
// slash-separated elements, none empty, "." or "..", no control
// characters, none of forbidden. It is looser than object names (a folder
// may be called "My Backups") but keeps the path from climbing out.
func CheckDirPath(p, forbidden string) error {
	if len(p) > MaxNameLen {
		return fmt.Errorf("longer than %d bytes", MaxNameLen)
	}
	for elem := range strings.SplitSeq(p, "/") {
		switch elem {
		case "":
			return errors.New("empty element (doubled slash)")
		case ".", "..":
			return fmt.Errorf("element %q", elem)
		}
		for _, c := range elem {
			if c < 0x20 || c == 0x7f || strings.ContainsRune(forbidden, c) {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

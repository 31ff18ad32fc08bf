package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"
)

// TempMarker joins an object's name and the random suffix of the temporary
// file a backend's Save writes first and renames into place; tempSuffixLen
// is the suffix's length in hex digits.
const (
	TempMarker    = ".tmp-"
	tempSuffixLen = 16
)

// TempName returns a new temporary name beside name: name, TempMarker and
// 16 random hex digits, so concurrent saves of one object never collide.
func TempName(name string) (string, error) {
	var rnd [tempSuffixLen / 2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("random temporary name for %q: %w", name, err)
	}
	return name + TempMarker + hex.EncodeToString(rnd[:]), nil
}

// IsTemp reports whether base (a name's last element) is the name of a
// temporary file of an unfinished save, which List must not show.
func IsTemp(base string) bool {
	i := strings.LastIndex(base, TempMarker)
	if i < 0 {
		return false
	}
	suffix := base[i+len(TempMarker):]
	if len(suffix) != tempSuffixLen {
		return false
	}
	_, err := hex.DecodeString(suffix)
	return err == nil
}

// CheckObjectName applies CheckName and also refuses names that look like
// temporary files, which List hides: an object so named would vanish.
func CheckObjectName(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if IsTemp(path.Base(name)) {
		return fmt.Errorf("%w %q: looks like a temporary file of an unfinished save", ErrInvalidName, name)
	}
	return nil
}

// CheckSave checks what every Save checks before any I/O: the name, the
// size, and that ctx is still live.
func CheckSave(ctx context.Context, name string, size int64) error {
	if err := CheckObjectName(name); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if size < 0 {
		return Permanent(fmt.Errorf("save %q: negative size %d", name, size))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	return nil
}

// ContextReader returns a reader that fails once ctx is done, so a long
// Save stops promptly when cancelled.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

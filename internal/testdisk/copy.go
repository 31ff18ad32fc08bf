package testdisk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// copyBlock is the unit of sparse copies: an all-zero block is skipped, so
// the destination keeps a hole there.
const copyBlock = 64 << 10

// copySparse copies n bytes of r starting at off into w starting at woff,
// skipping all-zero blocks. w must read as zero where nothing is written (a
// fresh file, or one truncated to size).
func copySparse(w io.WriterAt, woff int64, r io.ReaderAt, off, n int64) error {
	buf := make([]byte, copyBlock)
	for done := int64(0); done < n; {
		chunk := min(int64(len(buf)), n-done)
		got, err := r.ReadAt(buf[:chunk], off+done)
		if int64(got) != chunk {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read %d bytes at %d: %w", chunk, off+done, err)
		}
		if !allZero(buf[:chunk]) {
			if _, err := w.WriteAt(buf[:chunk], woff+done); err != nil {
				return fmt.Errorf("write %d bytes at %d: %w", chunk, woff+done, err)
			}
		}
		done += chunk
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// extractRange copies [off, off+size) of the file image into a new sparse
// file at dst, so tools that cannot take an offset work on a private copy.
func extractRange(image string, off, size int64, dst string) error {
	in, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("open image %s: %w", image, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create partition copy %s: %w", dst, err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("size partition copy %s: %w", dst, err)
	}
	if err := copySparse(out, 0, in, off, size); err != nil {
		return fmt.Errorf("copy %s [%d, +%d) to %s: %w", image, off, size, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close partition copy %s: %w", dst, err)
	}
	return nil
}

// copyTree copies the tree below src into dst (which must exist): regular
// files (sparse where the source reads as zeros), directories, symbolic
// links, and hard links, which are made again between the copies of names
// that share an inode in src.
func copyTree(src, dst string) error {
	type key struct{ dev, ino uint64 }
	seen := map[key]string{}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == src {
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return fmt.Errorf("relative path of %s: %w", path, err)
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(path)
		if err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		switch {
		case fi.IsDir():
			if err := os.Mkdir(target, 0o755); err != nil {
				return fmt.Errorf("create directory %s: %w", target, err)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return fmt.Errorf("read link %s: %w", path, err)
			}
			if err := os.Symlink(link, target); err != nil {
				return fmt.Errorf("create symlink %s: %w", target, err)
			}
		case fi.Mode().IsRegular():
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				k := key{uint64(st.Dev), st.Ino}
				if first, ok := seen[k]; ok {
					if err := os.Link(first, target); err != nil {
						return fmt.Errorf("hard link %s to %s: %w", target, first, err)
					}
					return nil
				}
				seen[k] = target
			}
			if err := copyFile(path, target, fi.Size()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("copy %s: unsupported file type %s", path, fi.Mode().Type())
		}
		return nil
	})
}

func copyFile(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	defer out.Close()
	if err := copySparse(out, 0, in, 0, size); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	// Truncate after the copy so a trailing hole keeps the file's size.
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("size %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

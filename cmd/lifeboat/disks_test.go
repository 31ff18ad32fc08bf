package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// makeDisksImage builds a GPT image with one ext4 partition at 1 MiB,
// labelled "cli-root", using sgdisk and mkfs.ext4.
func makeDisksImage(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	fsImg := filepath.Join(dir, "root.ext4")
	if err := os.WriteFile(img, make([]byte, 12<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sgdisk, _ := testenv.LookPath("sgdisk")
	mkfs, _ := testenv.LookPath("mkfs.ext4")
	for _, c := range [][]string{
		{sgdisk, "-n", "1:2048:+8M", "-t", "1:8300", "-c", "1:cliroot", img},
		{mkfs, "-q", "-F", "-L", "cli-root", fsImg, "8M"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	b, err := os.ReadFile(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 1<<20); err != nil {
		t.Fatal(err)
	}
	return img
}

func runCapture(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	code := run(context.Background(), env, args)
	return code, out.String(), errb.String()
}

func TestDisksJSON(t *testing.T) {
	img := makeDisksImage(t)
	code, out, errs := runCapture(t, "disks", "--json", "--disk", img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if len(list) == 0 {
		t.Fatal("empty disk list")
	}
	d := list[len(list)-1]
	if d["path"] != img || d["is_file"] != true || d["table"] != "gpt" || d["logical_sector_size"] != float64(512) || d["size"] != float64(12<<20) {
		t.Fatalf("image disk = %v", d)
	}
	parts, _ := d["partitions"].([]any)
	if len(parts) != 1 {
		t.Fatalf("partitions = %v", d["partitions"])
	}
	p := parts[0].(map[string]any)
	if p["number"] != float64(1) || p["start"] != float64(1<<20) || p["name"] != "cliroot" || p["fs"] != "ext4" || p["label"] != "cli-root" {
		t.Errorf("partition = %v", p)
	}
	if used, _ := p["used"].(float64); used <= 0 || used > 8<<20 {
		t.Errorf("used = %v, want a byte count within the 8 MiB partition", p["used"])
	}

	code, out, errs = runCapture(t, "disks", "--json", "--no-usage", "--disk", img)
	if code != 0 {
		t.Fatalf("--no-usage: exit %d: %s", code, errs)
	}
	list = nil
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	p = list[len(list)-1]["partitions"].([]any)[0].(map[string]any)
	if p["used"] != float64(-1) {
		t.Errorf("--no-usage: used = %v, want -1", p["used"])
	}
}

func TestDisksText(t *testing.T) {
	img := makeDisksImage(t)
	code, out, errs := runCapture(t, "disks", "--disk", img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"image file " + img + " 12.0 MiB (12582912 bytes)", "table gpt", "NAME/LABEL", "cliroot / cli-root", "ext4", "8.0 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := runCapture(t, "disks", "--bogus"); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code, _, _ := runCapture(t, "disks", "--disk", filepath.Join(t.TempDir(), "missing.img")); code != 1 {
		t.Errorf("missing image: exit %d, want 1", code)
	}
}

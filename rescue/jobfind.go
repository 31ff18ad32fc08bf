package rescue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/engine/disks"
)

// kernelFS maps the file systems a job file may live on to the kernel's
// name for them. NTFS is left out: its driver here is ntfs-3g, a FUSE
// program, and a boot stick's job file sits on its FAT or ISO 9660 part.
var kernelFS = map[string]string{
	"vfat": "vfat", "exfat": "exfat", "iso9660": "iso9660",
	"ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "xfs": "xfs", "btrfs": "btrfs",
}

// volume is a file system that may hold a job file.
type volume struct {
	dev, fs, label, uuid string
}

// FindJobFile locates the job file lifeboat.job names ([DEVICE:]PATH, see
// ParseJobSpec) on the machine's block devices, mounting file systems read
// only under root/run/lifeboat/media. It returns the file's path and a
// function that unmounts what stays mounted. root is "/" on the appliance.
func FindJobFile(ctx context.Context, root, spec string) (string, func(), error) {
	device, file, err := ParseJobSpec(spec)
	if err != nil {
		return "", nil, err
	}
	list, err := disks.Scan(ctx, disks.Options{SysRoot: filepath.Join(root, "sys"), ProcRoot: filepath.Join(root, "proc"), DevRoot: filepath.Join(root, "dev")})
	if err != nil {
		return "", nil, fmt.Errorf("find job file %s: %w", spec, err)
	}
	vols := volumes(list)
	if device != "" {
		var match []volume
		for _, v := range vols {
			if device == "LABEL="+v.label || strings.EqualFold(device, "UUID="+v.uuid) || device == v.dev {
				match = append(match, v)
			}
		}
		switch {
		case len(match) == 0:
			return "", nil, fmt.Errorf("find job file %s: no file system %s among %s", spec, device, describeVolumes(vols))
		case len(match) > 1:
			return "", nil, fmt.Errorf("find job file %s: %d file systems match %s (%s): name one by UUID= or /dev/", spec, len(match), device, describeVolumes(match))
		}
		vols = match
	}
	mediaDir := filepath.Join(root, "run", "lifeboat", "media")
	type found struct {
		v     volume
		mount string
	}
	var hits []found
	var tried []string
	for _, v := range vols {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		mnt := filepath.Join(mediaDir, filepath.Base(v.dev))
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return "", nil, fmt.Errorf("find job file: %w", err)
		}
		if err := unix.Mount(v.dev, mnt, kernelFS[v.fs], unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%s: mount failed: %v)", v.dev, v.fs, err))
			continue
		}
		if fi, err := os.Stat(filepath.Join(mnt, file)); err == nil && fi.Mode().IsRegular() {
			hits = append(hits, found{v, mnt})
			continue
		}
		tried = append(tried, fmt.Sprintf("%s (%s)", v.dev, v.fs))
		_ = unix.Unmount(mnt, 0)
	}
	release := func() {
		for _, h := range hits {
			_ = unix.Unmount(h.mount, 0)
		}
	}
	switch {
	case len(hits) == 0:
		if len(tried) == 0 {
			return "", nil, fmt.Errorf("find job file %s: no file system the appliance can read was found", spec)
		}
		return "", nil, fmt.Errorf("find job file %s: not found on %s", spec, strings.Join(tried, ", "))
	case len(hits) > 1:
		var on []string
		for _, h := range hits {
			on = append(on, h.v.dev)
		}
		release()
		// Two sticks with a nightly.job each: running either could write
		// the wrong disk, so neither runs.
		return "", nil, fmt.Errorf("find job file %s: found on %s: name the device (lifeboat.job=LABEL=...:%s)", spec, strings.Join(on, " and "), file)
	}
	return filepath.Join(hits[0].mount, file), release, nil
}

// volumes lists the mountable file systems of the disks: partitions, and
// whole disks without a partition table (a CD is one).
func volumes(list []disks.Disk) []volume {
	var out []volume
	for _, d := range list {
		if d.IsFile {
			continue
		}
		for _, p := range d.Partitions {
			if kernelFS[p.FS] == "" {
				continue
			}
			dev := p.Path
			if p.Number == 0 {
				dev = d.Path
			}
			if dev == "" {
				continue
			}
			out = append(out, volume{dev: dev, fs: p.FS, label: p.Label, uuid: p.UUID})
		}
	}
	return out
}

func describeVolumes(vols []volume) string {
	if len(vols) == 0 {
		return "no readable file system"
	}
	var s []string
	for _, v := range vols {
		d := v.dev + " " + v.fs
		if v.label != "" {
			d += " LABEL=" + v.label
		}
		s = append(s, d)
	}
	return strings.Join(s, ", ")
}

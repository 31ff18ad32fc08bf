package clone

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// Phases reported through progress.Counters.
const (
	PhaseDiscard = "discard"
	PhaseCopy    = "copy"
	PhaseVerify  = "verify"
	PhaseGrow    = "grow"
	PhaseTable   = "table"
)

// Result says what a clone did.
type Result struct {
	// Copied is the number of bytes read from the source and written or
	// skipped as already-zero on the target.
	Copied int64
	// Written is the number of bytes written to the target.
	Written  int64
	Duration time.Duration
	// Verified is true when --verify re-read the target and every
	// checksum matched.
	Verified bool
	Warnings []string
}

// IncompleteError says that the clone stopped after the target was
// changed: the target holds no usable copy.
type IncompleteError struct {
	Target string
	// State says what the target holds now.
	State string
	Err   error
}

func (e *IncompleteError) Error() string {
	if errors.Is(e.Err, context.Canceled) {
		return fmt.Sprintf("interrupted: the target %s is incomplete: %s", e.Target, e.State)
	}
	return fmt.Sprintf("%v; the target %s is incomplete: %s", e.Err, e.Target, e.State)
}

func (e *IncompleteError) Unwrap() error { return e.Err }

// VerifyError lists the target ranges that do not match the source.
type VerifyError struct {
	Mismatches []Mismatch
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("verification failed: %d range(s) of the target differ from the source", len(e.Mismatches))
	for i, m := range e.Mismatches {
		if i == 5 {
			s += fmt.Sprintf(", and %d more", len(e.Mismatches)-5)
			break
		}
		s += fmt.Sprintf("; bytes %d-%d", m.Off, m.Off+m.Len-1)
	}
	return s
}

// Run carries out a plan. counters may be nil.
func Run(ctx context.Context, p *Plan, counters *progress.Counters) (*Result, error) {
	if counters == nil {
		counters = &progress.Counters{}
	}
	if p.src == nil {
		return nil, errors.New("run clone: the plan is closed")
	}
	start := time.Now()
	o := p.Opts
	tgt, err := blockdev.Open(ctx, o.Target.Path, blockdev.Options{Mode: blockdev.ReadWrite})
	if err != nil {
		return nil, &RefusedError{Reason: fmt.Sprintf("open the target: %v", err)}
	}
	defer tgt.Close()
	if tgt.Size() != o.Target.Size {
		return nil, refuse("the target %s changed size since it was inspected (%d, now %d bytes)", o.Target.Path, o.Target.Size, tgt.Size())
	}
	res := &Result{Warnings: append([]string(nil), p.Warnings...)}
	touched := false
	fail := func(err error) (*Result, error) {
		if touched {
			state := "it holds no partition table and no usable copy"
			switch {
			case o.Delta:
				state = "it holds a mix of its old content and the new; run the same command again to finish it"
			case o.ToPartition != 0:
				state = fmt.Sprintf("partition %d holds no usable file system; the rest of the disk is as it was", o.ToPartition)
			case p.DstTable == nil:
				state = "it holds no usable copy"
			}
			return res, &IncompleteError{Target: o.Target.Path, State: state, Err: err}
		}
		return res, err
	}

	wholeDisk := o.Partition == 0
	// Ranges the clone will overwrite: discarding them first lets the
	// copy skip all-zero data of raw volumes.
	var ranges []fsmap.Extent
	if wholeDisk || o.ToPartition == 0 {
		ranges = []fsmap.Extent{{Off: 0, Len: tgt.Size()}}
	} else {
		ranges = []fsmap.Extent{{Off: p.Items[0].DstOff, Len: p.Items[0].DstSize}}
	}
	zeroed := false
	if !o.NoDiscard && !o.Delta {
		counters.SetPhase(PhaseDiscard, fsmap.Total(ranges))
		zeroed = true
		for _, r := range ranges {
			z, err := tgt.Discard(r.Off, r.Len)
			touched = true
			if err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("discard skipped: %v", err))
				zeroed = false
				break
			}
			zeroed = zeroed && z
			counters.Add(r.Len)
		}
	}
	if wholeDisk && p.SrcTable.Kind != ptable.None && !o.SectorBySector && !o.Delta {
		// The old table goes first so that an interrupted clone never
		// looks like a good disk.
		if err := ptable.Wipe(ctx, tgt, tgt.Size(), tgt.SectorSize()); err != nil {
			return fail(fmt.Errorf("wipe the old partition table: %w", err))
		}
		touched = true
	}

	var spans []span
	var head []span // written after everything else (sector-by-sector)
	for _, it := range p.Items {
		s := extentSpans(it.Extents, it.SrcOff, it.DstOff, mergeGap, zeroed && it.FS.Raw)
		if o.SectorBySector {
			// The table lives in the first MiB; it goes last.
			const headLen = 1 << 20
			for _, sp := range s {
				if sp.src < headLen {
					n := min(sp.n, headLen-sp.src)
					head = append(head, span{src: sp.src, dst: sp.dst, n: n})
					sp.src += n
					sp.dst += n
					sp.n -= n
				}
				if sp.n > 0 {
					spans = append(spans, sp)
				}
			}
			continue
		}
		spans = append(spans, s...)
	}
	if p.BootGap.Len > 0 {
		spans = append(spans, span{src: p.BootGap.Off, dst: p.BootGap.Off, n: p.BootGap.Len})
	}
	workers := o.Workers
	if workers <= 0 {
		// Enough pieces in flight for a disk's queue and for restores'
		// decoding, but not one per core: each holds a 4 MiB buffer, and
		// a restore's a decoded frame too (16 of them took a restore to
		// 366 MiB, measured with GOMAXPROCS=16).
		workers = max(4, min(runtime.GOMAXPROCS(0), maxWorkers))
	}
	chunk := o.ChunkSize
	if chunk <= 0 {
		chunk = defaultChunk
	}
	cp := &copier{src: p.read, dst: tgt, chunk: chunk, workers: workers, counters: counters, sums: o.Verify, delta: o.Delta, dstReader: tgt}
	counters.SetPhase(PhaseCopy, spanTotal(spans)+spanTotal(head))
	touched = true
	sums, err := cp.run(ctx, spans)
	if err != nil {
		return fail(fmt.Errorf("copy: %w", err))
	}
	if len(head) > 0 {
		hs, err := cp.run(ctx, head)
		if err != nil {
			return fail(fmt.Errorf("copy the first MiB: %w", err))
		}
		sums = append(sums, hs...)
	}
	res.Copied = counters.Snapshot().Done
	if err := tgt.Sync(); err != nil {
		return fail(err)
	}

	if o.Verify {
		counters.SetPhase(PhaseVerify, spanTotal(spans)+spanTotal(head))
		for _, r := range ranges {
			if err := tgt.DropCache(r.Off, r.Len); err != nil {
				return fail(err)
			}
		}
		bad, err := verify(ctx, tgt, sums, chunk, workers, counters)
		if err != nil {
			return fail(fmt.Errorf("verify: %w", err))
		}
		if len(bad) > 0 {
			return fail(&VerifyError{Mismatches: bad})
		}
		res.Verified = true
	}

	var grow []Item
	for _, it := range p.Items {
		if it.GrowTo > 0 && it.grower != nil {
			grow = append(grow, it)
		}
	}
	if len(grow) > 0 {
		counters.SetPhase(PhaseGrow, int64(len(grow)))
		for _, it := range grow {
			v := &volume{Window: blockdev.Sub(tgt, it.DstOff, it.GrowTo), backing: o.Target.Path}
			if err := it.grower(ctx, v, it.GrowTo); err != nil {
				return fail(fmt.Errorf("grow the %s file system of %s: %w", it.FS.Type, volumeName(it.Number), err))
			}
			counters.Add(1)
		}
	}

	for _, it := range p.Items {
		for _, f := range it.finish {
			size := it.DstSize
			v := &volume{Window: blockdev.Sub(tgt, it.DstOff, size), backing: o.Target.Path}
			if err := f(ctx, v); err != nil {
				return fail(fmt.Errorf("%s: %w", volumeName(it.Number), err))
			}
		}
	}

	if p.DstTable != nil {
		counters.SetPhase(PhaseTable, 1)
		if err := p.DstTable.Write(ctx, tgt, tgt.Size()); err != nil {
			return fail(fmt.Errorf("write the partition table: %w", err))
		}
		if err := tgt.Sync(); err != nil {
			return fail(err)
		}
		if err := tgt.DropCache(0, tgt.Size()); err != nil {
			return fail(err)
		}
		back, err := ptable.Read(ctx, tgt, tgt.Size(), p.DstTable.SectorSize)
		if err != nil {
			return fail(fmt.Errorf("read back the partition table just written: %w", err))
		}
		if err := sameLayout(p.DstTable, back); err != nil {
			return fail(fmt.Errorf("the partition table read back differs from the one written: %w", err))
		}
		if err := tgt.RereadPartitions(); err != nil {
			res.Warnings = append(res.Warnings, err.Error())
		}
		counters.Add(1)
	}
	if err := tgt.Sync(); err != nil {
		return fail(err)
	}
	res.Written = counters.Snapshot().Written
	res.Duration = time.Since(start)
	return res, nil
}

const (
	defaultChunk = 4 << 20
	// maxWorkers bounds the default number of copy workers.
	maxWorkers = 8
	// mergeGap: unused gaps up to this size between used extents are
	// copied rather than skipped (measured in bench/: fewer, larger
	// requests win below this size).
	mergeGap = 256 << 10
)

func spanTotal(s []span) int64 {
	var n int64
	for _, x := range s {
		n += x.n
	}
	return n
}

func sameLayout(want, got *ptable.Table) error {
	if want.Kind != got.Kind {
		return fmt.Errorf("kind %s, read back %s", want.Kind, got.Kind)
	}
	if len(want.Partitions) != len(got.Partitions) {
		return fmt.Errorf("%d partitions, read back %d", len(want.Partitions), len(got.Partitions))
	}
	for i, w := range want.Partitions {
		g := got.Partitions[i]
		if w.Number != g.Number || w.Start != g.Start || w.Size != g.Size || w.Type != g.Type || w.GUID != g.GUID {
			return fmt.Errorf("partition %d: wrote start %d size %d type %s, read back partition %d start %d size %d type %s", w.Number, w.Start, w.Size, w.Type, g.Number, g.Start, g.Size, g.Type)
		}
	}
	return nil
}

// volume is a target partition handed to a file-system grower.
type volume struct {
	*blockdev.Window
	backing string
}

// DevicePath attaches a loop device over exactly the volume: its partition
// is not in a table yet (the table is written last) or is inside an image
// file.
func (v *volume) DevicePath(ctx context.Context) (string, func() error, error) {
	if err := v.Sync(); err != nil {
		return "", nil, err
	}
	l, err := blockdev.AttachLoop(ctx, v.backing, v.Offset(), v.Size(), false)
	if err != nil {
		return "", nil, err
	}
	return l.Path, l.Detach, nil
}

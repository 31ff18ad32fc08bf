package repo

// bufList keeps a few buffers of one capacity for reuse. A writer's large
// buffers (packs of 32 MiB, groups of 4 MiB and their compressed frames)
// would otherwise be garbage after each use: the garbage collector gives
// their pages back to the kernel and the next buffer faults them in and
// zeroes them again, which on the bench source cost a backup more system
// time than reading the source did. A list holds at most its bound, so the
// memory it keeps is that of the busiest moment, which the writer's upload
// slots already bound.
type bufList struct {
	free chan []byte
	size int
}

func newBufList(n, size int) *bufList {
	return &bufList{free: make(chan []byte, n), size: size}
}

// get returns an empty buffer of the list's capacity.
func (l *bufList) get() []byte {
	select {
	case b := <-l.free:
		return b[:0]
	default:
		return make([]byte, 0, l.size)
	}
}

// put gives b back for reuse; a buffer of another capacity (one that grew,
// or was never the list's) is left to the garbage collector, as is one more
// than the list holds. The caller must not use b afterwards.
func (l *bufList) put(b []byte) {
	if cap(b) != l.size {
		return
	}
	select {
	case l.free <- b[:0]:
	default:
	}
}

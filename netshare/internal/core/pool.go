package core

import (
	"context"
	"errors"
	"sync"
)

// Pool hands a backend's connections (sessions) out for one operation at
// a time: at most its size are open, each dialled when first needed, and
// one an operation found broken is dropped so the next dials afresh.
type Pool[S any] struct {
	// slots holds one entry per allowed session: the session, or nil for
	// one not dialled (or dropped).
	slots  chan *S
	dial   func(context.Context) (*S, error)
	close  func(*S)
	usable func(*S) bool
	closed error

	mu       sync.Mutex
	isClosed bool
}

// NewPool makes a pool of size sessions. dial opens one; close ends one;
// usable, when set, tells whether an idle session may still serve;
// closed is the error take returns after Close.
func NewPool[S any](size int, dial func(context.Context) (*S, error), close func(*S), usable func(*S) bool, closed error) *Pool[S] {
	p := &Pool[S]{slots: make(chan *S, size), dial: dial, close: close, usable: usable, closed: closed}
	for range size {
		p.slots <- nil
	}
	return p
}

// ErrPoolClosed is wrapped by the error take returns after Close.
var ErrPoolClosed = errors.New("closed")

func (p *Pool[S]) isShut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isClosed
}

// Take returns a session for one operation, waiting for a free slot and
// dialling when the slot holds no usable session.
func (p *Pool[S]) Take(ctx context.Context) (*S, error) {
	var s *S
	select {
	case s = <-p.slots:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.isShut() {
		p.drop(s)
		p.slots <- nil
		return nil, Permanent(p.closed)
	}
	if s != nil && (p.usable == nil || p.usable(s)) {
		return s, nil
	}
	p.drop(s)
	s, err := p.dial(ctx)
	if err != nil {
		p.slots <- nil
		return nil, err
	}
	return s, nil
}

// Give returns s after an operation; with keep false (its connection may
// be gone), or once the pool is closed, s is closed instead.
func (p *Pool[S]) Give(s *S, keep bool) {
	if !keep || p.isShut() {
		p.drop(s)
		s = nil
	}
	p.slots <- s
}

// Close closes every idle session; sessions in use are closed when given
// back. Later Takes fail.
func (p *Pool[S]) Close() {
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		return
	}
	p.isClosed = true
	p.mu.Unlock()
	for {
		select {
		case s := <-p.slots:
			p.drop(s)
		default:
			return
		}
	}
}

func (p *Pool[S]) drop(s *S) {
	if s != nil {
		p.close(s)
	}
}

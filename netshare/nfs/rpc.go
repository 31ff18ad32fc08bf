package nfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// ONC RPC (RFC 5531) over TCP with record marking: calls are written whole,
// one goroutine reads replies and hands each to the call with its
// transaction id, so several calls may be in flight on one connection.

// maxRecord bounds a reply: the largest READ this client asks for plus
// headers, and a READDIRPLUS of maxDirReply. A server announcing more is
// refused rather than trusted with the allocation.
const maxRecord = maxIO + 64<<10

// callTimeout is how long a call waits for its reply before the connection
// is declared dead: a server that stops answering without closing the
// connection must still give a retryable error.
const callTimeout = 2 * time.Minute

// errConnBroken is wrapped by the error of every call that failed because
// the connection did (closed, reset, timed out, garbled): such a
// connection is dropped and the error is retryable.
var errConnBroken = errors.New("connection to the NFS server lost")

// Program numbers and versions.
const (
	progPortmap = 100000
	versPortmap = 2
	progNFS     = 100003
	versNFS     = 3
	progMount   = 100005
	versMount   = 3
)

type rpcReply struct {
	body []byte
	err  error
}

// rpcClient is one TCP connection to one RPC server.
type rpcClient struct {
	conn net.Conn
	cred []byte // the encoded credential sent with every call

	wmu sync.Mutex // serialises record writes

	mu      sync.Mutex
	pending map[uint32]chan rpcReply
	err     error // set once the connection failed
	xid     uint32
}

// dialRPC connects to addr. As root it first tries a reserved source port
// (below 1024), which Linux's nfsd and many NAS servers require by default.
func dialRPC(ctx context.Context, addr string, cred []byte) (*rpcClient, error) {
	conn, err := dialReserved(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %w", errConnBroken, addr, err)
	}
	c := &rpcClient{conn: conn, cred: cred, pending: make(map[uint32]chan rpcReply), xid: rand.Uint32()}
	go c.readLoop()
	return c, nil
}

func dialReserved(ctx context.Context, addr string) (net.Conn, error) {
	for range 8 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: 600 + rand.IntN(424)}}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			break // not root: any port
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// close ends the connection; calls in flight fail.
func (c *rpcClient) close() { c.shutdown(fmt.Errorf("%w: closed", errConnBroken)) }

func (c *rpcClient) shutdown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	_ = c.conn.Close()
	for xid, ch := range c.pending {
		ch <- rpcReply{err: err}
		delete(c.pending, xid)
	}
}

// broken reports whether the connection has failed.
func (c *rpcClient) broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

func (c *rpcClient) readLoop() {
	for {
		rec, err := readRecord(c.conn)
		if err != nil {
			c.shutdown(fmt.Errorf("%w: read reply: %w", errConnBroken, err))
			return
		}
		if len(rec) < 4 {
			c.shutdown(fmt.Errorf("%w: reply of %d bytes", errConnBroken, len(rec)))
			return
		}
		xid := binary.BigEndian.Uint32(rec)
		c.mu.Lock()
		ch, ok := c.pending[xid]
		delete(c.pending, xid)
		c.mu.Unlock()
		if ok {
			ch <- rpcReply{body: rec[4:]}
		}
		// A reply nobody waits for answers a call whose caller gave up.
	}
}

// readRecord reads one record: fragments until the last, at most maxRecord
// bytes in all.
func readRecord(r io.Reader) ([]byte, error) {
	var rec []byte
	for range 1024 {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(rec)+n > maxRecord {
			return nil, fmt.Errorf("reply record larger than %d bytes", maxRecord)
		}
		start := len(rec)
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(r, rec[start:]); err != nil {
			return nil, err
		}
		if h&0x80000000 != 0 {
			return rec, nil
		}
	}
	return nil, errors.New("reply record of more than 1024 fragments")
}

// rpcError is a call that reached the server and was refused by the RPC
// layer (wrong program or version, bad credentials).
type rpcError struct{ msg string }

func (e *rpcError) Error() string { return e.msg }

// call sends one call and returns the decoder of its results.
func (c *rpcClient) call(ctx context.Context, prog, vers, proc uint32, args []byte) (*decoder, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan rpcReply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.xid++
	xid := c.xid
	c.pending[xid] = ch
	c.mu.Unlock()

	var e encoder
	e.u32(0) // record mark, set below
	e.u32(xid)
	e.u32(0) // CALL
	e.u32(2) // RPC version
	e.u32(prog)
	e.u32(vers)
	e.u32(proc)
	e.b = append(e.b, c.cred...)
	e.u32(0) // verifier: AUTH_NONE
	e.u32(0)
	e.b = append(e.b, args...)
	binary.BigEndian.PutUint32(e.b, 0x80000000|uint32(len(e.b)-4))

	c.wmu.Lock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(callTimeout))
	_, err := c.conn.Write(e.b)
	c.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: send call: %w", errConnBroken, err)
		c.shutdown(err)
		return nil, err
	}
	timer := time.NewTimer(callTimeout)
	defer timer.Stop()
	var rep rpcReply
	select {
	case rep = <-ch:
	case <-ctx.Done():
		c.forget(xid)
		return nil, ctx.Err()
	case <-timer.C:
		err := fmt.Errorf("%w: no reply in %v", errConnBroken, callTimeout)
		c.shutdown(err)
		return nil, err
	}
	if rep.err != nil {
		return nil, rep.err
	}
	return parseReply(rep.body)
}

func (c *rpcClient) forget(xid uint32) {
	c.mu.Lock()
	delete(c.pending, xid)
	c.mu.Unlock()
}

// parseReply checks a reply's header (after the xid) and returns the
// decoder of the procedure's results.
func parseReply(body []byte) (*decoder, error) {
	d := &decoder{b: body}
	if mtype := d.u32(); d.err == nil && mtype != 1 {
		return nil, fmt.Errorf("%w: message type %d where a reply was expected", errConnBroken, mtype)
	}
	switch stat := d.u32(); {
	case d.err != nil:
	case stat == 0: // MSG_ACCEPTED
		d.u32()       // verifier flavour
		d.opaque(400) // verifier body
		switch as := d.u32(); {
		case d.err != nil:
		case as == 0:
			return d, nil
		case as == 1:
			return nil, &rpcError{"RPC program unavailable on the server"}
		case as == 2:
			lo, hi := d.u32(), d.u32()
			return nil, &rpcError{fmt.Sprintf("RPC program version not supported by the server (it offers %d to %d)", lo, hi)}
		case as == 3:
			return nil, &rpcError{"RPC procedure unavailable on the server"}
		case as == 4:
			return nil, &rpcError{"the server could not decode the call's arguments"}
		default:
			return nil, fmt.Errorf("RPC system error on the server (accept status %d)", as)
		}
	case stat == 1: // MSG_DENIED
		switch rs := d.u32(); {
		case d.err != nil:
		case rs == 0:
			return nil, &rpcError{"RPC version mismatch"}
		default:
			return nil, &rpcError{fmt.Sprintf("RPC authentication refused (auth status %d): the server does not accept AUTH_UNIX from this client", d.u32())}
		}
	default:
		return nil, fmt.Errorf("%w: reply status %d", errConnBroken, stat)
	}
	return nil, fmt.Errorf("%w: %w", errConnBroken, d.err)
}

// authUnix encodes an AUTH_UNIX credential for uid and gid.
func authUnix(uid, gid uint32) []byte {
	var body encoder
	body.u32(uint32(time.Now().Unix()))
	body.str("lifeboat")
	body.u32(uid)
	body.u32(gid)
	body.u32(1) // auxiliary groups
	body.u32(gid)
	var e encoder
	e.u32(1) // AUTH_UNIX
	e.opaque(body.b)
	return e.b
}

package nfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// fakeServer answers every call on conn with body after the call's xid,
// until conn is closed.
func fakeServer(conn net.Conn, body []byte) {
	for {
		rec, err := readRecord(conn)
		if err != nil || len(rec) < 4 {
			conn.Close()
			return
		}
		out := make([]byte, 8, 8+len(body))
		binary.BigEndian.PutUint32(out, 0x80000000|uint32(4+len(body)))
		copy(out[4:8], rec[:4])
		out = append(out, body...)
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// okReply is the header of an accepted, successful reply.
func okReply(results ...uint32) []byte {
	var e encoder
	e.u32(1) // REPLY
	e.u32(0) // MSG_ACCEPTED
	e.u32(0) // verifier AUTH_NONE
	e.u32(0)
	e.u32(0) // SUCCESS
	for _, r := range results {
		e.u32(r)
	}
	return e.b
}

// FuzzReply feeds arbitrary server replies to every procedure of the
// client and arbitrary bytes to the record reader: errors are fine, a
// panic, a hang or a huge allocation is not.
func FuzzReply(f *testing.F) {
	f.Add(okReply(0))
	f.Add(okReply(0, 8, 1, 2, 3, 4))
	f.Add(okReply(0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xffffffff))
	f.Add(okReply(0, 0, 8, 1, 2, 1, 0, 7, 3, 0x41414141, 0, 9, 0, 0, 0, 1))
	f.Add(okReply(2))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5})
	f.Add([]byte{0x80, 0, 0, 4, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, body []byte) {
		if rec, err := readRecord(bytes.NewReader(body)); err == nil && len(rec) > maxRecord {
			t.Fatalf("readRecord returned %d bytes, over the %d limit", len(rec), maxRecord)
		}
		if len(body) > maxRecord-4 {
			return
		}
		cli, srv := net.Pipe()
		go fakeServer(srv, body)
		c := &rpcClient{conn: cli, cred: noAuth(), pending: make(map[uint32]chan rpcReply)}
		go c.readLoop()
		defer c.close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n := nfsConn{c}
		fh := []byte{1, 2, 3, 4}
		_, _ = mnt(ctx, c, "/export")
		_, _ = getport(ctx, c, progNFS, versNFS)
		_, _, _ = n.lookup(ctx, fh, "x")
		_, _ = n.getattr(ctx, fh)
		buf := make([]byte, 4096)
		if k, _, err := n.read(ctx, fh, 0, buf); err == nil && k > len(buf) {
			t.Fatalf("read returned %d bytes into a %d-byte buffer", k, len(buf))
		}
		_, _ = n.write(ctx, fh, 0, []byte("data"), unstable)
		_, _ = n.commit(ctx, fh)
		_, _ = n.createNew(ctx, fh, "x")
		_, _ = n.mkdir(ctx, fh, "d")
		_ = n.remove(ctx, fh, "x")
		_ = n.rename(ctx, fh, "a", "b")
		entries := 0
		_ = n.readdir(ctx, fh, func(dirEntry) error {
			entries++
			if entries > 1<<16 {
				t.Fatal("readdir does not end")
			}
			return nil
		})
		_, _, _ = n.fsinfo(ctx, fh)
		if ctx.Err() != nil {
			t.Fatal("a call hung until the test's deadline")
		}
	})
}

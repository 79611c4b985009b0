// scenarios: a peer built on the reference implementation (yddeng/smux) for the
// smux-rs interop tests, with the modes that the shared refpeer program lacks.
// smux-tests builds it against ../shared/reference/smux (see smux-tests/src/reference);
// nothing is downloaded.
//
// Modes:
//
//	server      listen on -addr, print "listening ADDR", serve every stream our side
//	            opens with the command protocol below
//	dial        dial -addr, serve every stream our side opens the same way
//	seq-client  dial -addr, open -n streams one after another: write 8 bytes, read
//	            the 8-byte echo, then close (-closer client) or wait for our end's
//	            close (-closer server); print "seq-done N" or the first
//	            "open-error I MSG" / "data-error I MSG"; then echo every stream our
//	            side opens until the process ends
//	push-client dial -addr, open -n streams at once, write a 16-byte header (seed,
//	            length) and -size bytes of the seeded test pattern on each, wait for
//	            "ok" on each, close them; print "push-done OK/N"; exit 1 at once if a
//	            stream failed, otherwise stay up
//	cut-client  dial -addr, open -n streams that write -size pattern bytes and read
//	            the echo; close the whole session once -after echoed bytes arrived
//
// The first byte of a stream our side opens is a command:
//
//	E  echo the rest until end-of-file, then close
//	K  read an 8-byte limit (LE); echo, and close the whole session (the TCP
//	   connection) once the session received that many bytes
//	O  try to open a stream back; answer "ok ID\n" or "err MSG\n", then close
//	F  write -flood bytes of 0xAA in one Write (which goes on sending while the
//	   window allows, even after our FIN), then close
//	S  read an 8-byte tag (LE u64), then read slowly (16 KiB per -pace) to
//	   end-of-file; print "slow TAG BYTES FNV1A64" (hex), then close
//	C  close at once; counts whether this end's close came first (its FIN was
//	   sent) or the peer's FIN had already arrived
//	W  read a 4-byte LE millisecond count, sleep that long without reading, close
//	Q  answer "conns N active A passive P\n" (other streams still known to the
//	   session, and the counts of C), then close
//
// With -watch-stdin the process exits when its standard input reaches end-of-file
// (the test that started it is gone); in any case it exits after -life.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	smux "github.com/yddeng/smux"
)

var (
	flood = flag.Int("flood", 8<<20, "bytes written by command F")
	pace  = flag.Duration("pace", 5*time.Millisecond, "command S: pause between 16 KiB reads")
)

// session is what the commands of one session share.
type session struct {
	s        *smux.MuxSession
	received int64 // bytes received by K streams
	active   int64 // C closes where this end's FIN went first
	passive  int64 // C closes where the peer's FIN had already arrived
}

func main() {
	mode := flag.String("mode", "", "server|dial|seq-client|push-client|cut-client")
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on or dial")
	n := flag.Int("n", 1, "streams")
	size := flag.Int("size", 0, "bytes per stream")
	seed := flag.Uint64("seed", 1, "push-client, cut-client: seed of the first stream's data")
	closer := flag.String("closer", "client", "seq-client: which end closes each stream first (client|server)")
	after := flag.Int64("after", 0, "cut-client: close the session after this many echoed bytes")
	life := flag.Duration("life", 5*time.Minute, "exit after this long whatever happens")
	watch := flag.Bool("watch-stdin", false, "exit when standard input reaches end-of-file")
	flag.Parse()
	if *watch {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(3)
		}()
	}
	go func() {
		time.Sleep(*life)
		fmt.Fprintln(os.Stderr, "scenarios: life time over")
		os.Exit(4)
	}()
	switch *mode {
	case "server":
		server(*addr)
	case "dial":
		s := dial(*addr)
		serve(s)
		fmt.Println("session-closed")
	case "seq-client":
		seqClient(dial(*addr), *n, *closer == "server")
	case "push-client":
		pushClient(dial(*addr), *n, *size, *seed)
	case "cut-client":
		cutClient(dial(*addr), *n, *size, *seed, *after)
	default:
		fmt.Fprintln(os.Stderr, "scenarios: unknown -mode", *mode)
		os.Exit(2)
	}
}

func dial(addr string) *smux.MuxSession {
	s, err := smux.Dial(addr, 5*time.Second)
	if err != nil {
		fmt.Println("dial-error", err)
		os.Exit(2)
	}
	fmt.Println("dialed")
	return s
}

func server(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen-error", err)
		os.Exit(2)
	}
	fmt.Println("listening", l.Addr())
	for {
		conn, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			os.Exit(2)
		}
		go serve(smux.NewMuxSession(conn))
	}
}

// serve runs the command protocol on every stream the peer opens, until the session ends.
func serve(s *smux.MuxSession) {
	st := &session{s: s}
	for {
		c, err := s.Accept()
		if err != nil {
			return
		}
		go st.command(c)
	}
}

func (st *session) command(c *smux.MuxConn) {
	var cmd [1]byte
	if !readFull(c, cmd[:]) {
		c.Close()
		return
	}
	switch cmd[0] {
	case 'E':
		echo(c, nil)
	case 'K':
		var b [8]byte
		if !readFull(c, b[:]) {
			c.Close()
			return
		}
		limit := int64(binary.LittleEndian.Uint64(b[:]))
		echo(c, func(n int) {
			if atomic.AddInt64(&st.received, int64(n)) >= limit {
				st.s.Close()
			}
		})
	case 'O':
		var msg string
		if nc, err := st.s.Open(); err != nil {
			msg = fmt.Sprintf("err %s\n", err)
		} else {
			msg = fmt.Sprintf("ok %d\n", nc.ID())
			nc.Close()
		}
		write(c, []byte(msg))
		c.Close()
	case 'F':
		buf := make([]byte, *flood)
		for i := range buf {
			buf[i] = 0xAA
		}
		_, _ = c.Write(buf)
		c.Close()
	case 'S':
		slowRead(c)
	case 'C':
		if st.s.GetMuxConn(c.ID()) != nil {
			atomic.AddInt64(&st.active, 1)
		} else {
			atomic.AddInt64(&st.passive, 1)
		}
		c.Close()
	case 'W':
		var b [4]byte
		if readFull(c, b[:]) {
			time.Sleep(time.Duration(binary.LittleEndian.Uint32(b[:])) * time.Millisecond)
		}
		c.Close()
	case 'Q':
		msg := fmt.Sprintf("conns %d active %d passive %d\n", st.s.NumMuxConn()-1,
			atomic.LoadInt64(&st.active), atomic.LoadInt64(&st.passive))
		write(c, []byte(msg))
		c.Close()
	default:
		fmt.Fprintf(os.Stderr, "scenarios: unknown command %q\n", cmd[0])
		c.Close()
	}
}

// readFull reads len(b) bytes within 30 s.
func readFull(c *smux.MuxConn, b []byte) bool {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	_, err := io.ReadFull(c, b)
	return err == nil
}

// write hands b to the stream. The reference's Write may return before it copied
// the buffer, so b must never be reused afterwards.
func write(c *smux.MuxConn, b []byte) bool {
	_, err := c.Write(b)
	return err == nil
}

// echo copies the stream back to the peer until end-of-file (or 60 s of silence),
// then closes it. count, if set, sees every piece received.
func echo(c *smux.MuxConn, count func(int)) {
	defer c.Close()
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := c.Read(buf)
		if n > 0 {
			if count != nil {
				count(n)
			}
			out := make([]byte, n)
			copy(out, buf[:n])
			if !write(c, out) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func slowRead(c *smux.MuxConn) {
	defer c.Close()
	var tag [8]byte
	if !readFull(c, tag[:]) {
		return
	}
	h := fnv.New64a()
	total := 0
	buf := make([]byte, 16384)
	for {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := c.Read(buf)
		h.Write(buf[:n])
		total += n
		if err != nil {
			break
		}
		time.Sleep(*pace)
	}
	fmt.Printf("slow %x %d %x\n", binary.LittleEndian.Uint64(tag[:]), total, h.Sum64())
}

func seqClient(s *smux.MuxSession, n int, serverCloses bool) {
	done := 0
	for i := 0; i < n; i++ {
		c, err := s.Open()
		if err != nil {
			fmt.Printf("open-error %d %s\n", i, err)
			break
		}
		if msg := seqStream(c, uint64(i), serverCloses); msg != "" {
			fmt.Printf("data-error %d %s\n", i, msg)
			break
		}
		done++
	}
	if done == n {
		fmt.Println("seq-done", done)
	}
	// Stay up for the test's next steps: echo the streams our side opens.
	for {
		c, err := s.Accept()
		if err != nil {
			fmt.Println("session-closed")
			return
		}
		go echo(c, nil)
	}
}

func seqStream(c *smux.MuxConn, i uint64, serverCloses bool) string {
	defer c.Close()
	out := make([]byte, 8)
	binary.LittleEndian.PutUint64(out, i)
	if !write(c, out) {
		return "write failed"
	}
	var back [8]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, back[:]); err != nil {
		return fmt.Sprintf("reading the echo: %v", err)
	}
	if binary.LittleEndian.Uint64(back[:]) != i {
		return fmt.Sprintf("echo of stream %d came back as %d", i, binary.LittleEndian.Uint64(back[:]))
	}
	if serverCloses {
		var b [1]byte
		if n, err := c.Read(b[:]); n != 0 || err != io.EOF {
			return fmt.Sprintf("expected end-of-file from the server, got %d bytes, %v", n, err)
		}
	}
	return ""
}

// Test data as smux-tests generates it (smux_tests::pattern): byte `pos` of stream
// `seed` is byte pos%8 (little-endian) of mix(seed ^ (pos/8)*K).
func mix(x uint64) uint64 {
	z := x
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func pattern(seed, offset uint64, buf []byte) {
	pos := offset
	for i := 0; i < len(buf); {
		word := mix(seed ^ ((pos / 8) * 0xD6E8FEB86659FD93))
		start := int(pos % 8)
		k := 8 - start
		if k > len(buf)-i {
			k = len(buf) - i
		}
		for j := 0; j < k; j++ {
			buf[i+j] = byte(word >> (8 * uint(start+j)))
		}
		i += k
		pos += uint64(k)
	}
}

// sendPattern writes size bytes of pattern seed in 64 KiB writes.
func sendPattern(c *smux.MuxConn, seed uint64, size int) error {
	for off := 0; off < size; off += 65536 {
		k := size - off
		if k > 65536 {
			k = 65536
		}
		chunk := make([]byte, k)
		pattern(seed, uint64(off), chunk)
		if _, err := c.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

func pushClient(s *smux.MuxSession, n, size int, seed uint64) {
	var wg sync.WaitGroup
	var ok int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := s.Open()
			if err != nil {
				fmt.Fprintln(os.Stderr, "open:", err)
				return
			}
			defer c.Close()
			hdr := make([]byte, 16)
			binary.LittleEndian.PutUint64(hdr, seed+uint64(i))
			binary.LittleEndian.PutUint64(hdr[8:], uint64(size))
			if !write(c, hdr) {
				return
			}
			if err := sendPattern(c, seed+uint64(i), size); err != nil {
				fmt.Fprintln(os.Stderr, "write:", err)
				return
			}
			var answer [2]byte
			c.SetReadDeadline(time.Now().Add(120 * time.Second))
			if _, err := io.ReadFull(c, answer[:]); err != nil || string(answer[:]) != "ok" {
				fmt.Fprintln(os.Stderr, "answer:", err)
				return
			}
			atomic.AddInt64(&ok, 1)
		}(i)
	}
	wg.Wait()
	fmt.Printf("push-done %d/%d\n", ok, n)
	if int(ok) != n {
		os.Exit(1)
	}
	// Stay up (the test checks the session afterwards) until the process ends.
	select {}
}

func cutClient(s *smux.MuxSession, n, size int, seed uint64, after int64) {
	var received int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, err := s.Open()
		if err != nil {
			fmt.Println("open-error", err)
			os.Exit(1)
		}
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			_ = sendPattern(c, seed+uint64(i), size)
		}(i)
		go func() {
			defer wg.Done()
			buf := make([]byte, 65536)
			for {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				n, err := c.Read(buf)
				if atomic.AddInt64(&received, int64(n)) >= after {
					s.Close()
				}
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("cut-done %d\n", atomic.LoadInt64(&received))
}

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"
)

// chunkSize is the read and write unit of transfers: 256 KiB is several
// 64 KiB GSO frames per system call, and small enough to stay in cache.
const chunkSize = 256 << 10

// transferResult is what download and upload print; with --json, one object.
type transferResult struct {
	Op      string  `json:"op"`
	URL     string  `json:"url"`
	Bytes   uint64  `json:"bytes"` // bytes moved and checked
	Seconds float64 `json:"seconds"`
	Gbps    float64 `json:"gbps"`
	OK      bool    `json:"ok"`
	Kind    string  `json:"kind"` // ok, refused, reset, timeout, other (see classify)
	Error   string  `json:"error,omitempty"`
	// MismatchOffset is the stream offset of the first wrong byte of a
	// download, -1 if none.
	MismatchOffset int64 `json:"mismatch_offset"`
}

func (r transferResult) text() string {
	if r.OK {
		return fmt.Sprintf("%s %d bytes (%.1f MiB) in %.3f s: %.2f Gbit/s, verified\n",
			r.Op, r.Bytes, float64(r.Bytes)/(1<<20), r.Seconds, r.Gbps)
	}
	return fmt.Sprintf("%s failed (%s) after %d bytes in %.2f s: %s\n", r.Op, r.Kind, r.Bytes, r.Seconds, r.Error)
}

func gbps(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) * 8 / d.Seconds() / 1e9
}

// dialTransfer connects for a transfer: the connect is bounded by idle, the
// connection gives up when no data moves for idle, and ctx (SIGINT, SIGTERM)
// ends it. done closes it.
func dialTransfer(ctx context.Context, e env, host string, idle time.Duration) (idleConn, func(), error) {
	dctx, cancel := context.WithTimeout(ctx, idle)
	conn, err := e.dial(dctx, "tcp", host)
	cancel()
	if err != nil {
		return idleConn{}, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return idleConn{Conn: conn, idle: idle}, func() { stop(); conn.Close() }, nil
}

// errMismatch marks a download whose bytes differ from the stream.
var errMismatch = errors.New("data mismatch")

// download fetches /bytes?n=N&seed=S from base and checks every byte.
func download(ctx context.Context, e env, base *url.URL, n, seed uint64, idle time.Duration, rate uint64) transferResult {
	u := *base
	u.Path, u.RawQuery = "/bytes", url.Values{"n": {strconv.FormatUint(n, 10)}, "seed": {strconv.FormatUint(seed, 10)}}.Encode()
	res := transferResult{Op: "download", URL: u.String(), MismatchOffset: -1}
	start := time.Now()
	err := func() error {
		c, done, err := dialTransfer(ctx, e, u.Host, idle)
		if err != nil {
			return err
		}
		defer done()
		if err := writeRequestHead(c, "GET", &u, -1); err != nil {
			return fmt.Errorf("write request: %w", err)
		}
		resp, err := readResponse(bufio.NewReaderSize(c, chunkSize), "GET")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.ContentLength >= 0 && uint64(resp.ContentLength) != n {
			return fmt.Errorf("content-length %d: want %d", resp.ContentLength, n)
		}
		s := stream{seed: seed}
		buf := make([]byte, chunkSize)
		if rate > 0 && rate/20 < uint64(len(buf)) {
			buf = buf[:max(rate/20, 1)] // about 20 reads a second
		}
		for res.Bytes < n {
			if rate > 0 {
				// Read no faster than rate: TCP flow control slows the sender.
				if ahead := time.Duration(float64(res.Bytes)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
			k, err := resp.Body.Read(buf[:min(uint64(len(buf)), n-res.Bytes)])
			if i := s.verify(buf[:k], res.Bytes); i >= 0 {
				res.MismatchOffset = int64(res.Bytes) + int64(i)
				return fmt.Errorf("%w at offset %d", errMismatch, res.MismatchOffset)
			}
			res.Bytes += uint64(k)
			if err == io.EOF && res.Bytes < n {
				return fmt.Errorf("short read: %d of %d bytes: %w", res.Bytes, n, io.ErrUnexpectedEOF)
			}
			if err != nil && err != io.EOF {
				return fmt.Errorf("read body at offset %d: %w", res.Bytes, err)
			}
		}
		return nil
	}()
	return finish(res, start, err)
}

// sinkAnswer is the JSON of POST /sink.
type sinkAnswer struct {
	Bytes  uint64 `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// streamSHA256 hashes the first n bytes of the stream.
func streamSHA256(n, seed uint64) string {
	h := sha256.New()
	buf := make([]byte, chunkSize)
	io.CopyBuffer(h, &streamReader{s: stream{seed: seed}, n: n}, buf)
	return hex.EncodeToString(h.Sum(nil))
}

// upload posts n stream bytes to /sink and compares the server's count and
// sha256. The expected hash is computed before the clock starts, so the rate
// measures the transfer, not the client's hashing.
func upload(ctx context.Context, e env, base *url.URL, n, seed uint64, idle time.Duration, _ uint64) transferResult {
	u := *base
	u.Path, u.RawQuery = "/sink", ""
	res := transferResult{Op: "upload", URL: u.String(), MismatchOffset: -1}
	want := streamSHA256(n, seed)
	start := time.Now()
	err := func() error {
		c, done, err := dialTransfer(ctx, e, u.Host, idle)
		if err != nil {
			return err
		}
		defer done()
		if err := writeRequestHead(c, "POST", &u, int64(n)); err != nil {
			return fmt.Errorf("write request: %w", err)
		}
		s := stream{seed: seed}
		buf := make([]byte, chunkSize)
		var sent uint64
		for sent < n {
			p := buf[:min(uint64(len(buf)), n-sent)]
			s.fill(p, sent)
			k, err := c.Write(p)
			sent += uint64(k)
			if err != nil {
				return fmt.Errorf("write body at offset %d: %w", sent, err)
			}
		}
		resp, err := readResponse(bufio.NewReader(c), "POST")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var a sinkAnswer
		if err := json.NewDecoder(io.LimitReader(resp.Body, bodyLimit)).Decode(&a); err != nil {
			return fmt.Errorf("decode sink answer: %w", err)
		}
		res.Bytes = a.Bytes
		if a.Bytes != n {
			return fmt.Errorf("server received %d bytes: want %d", a.Bytes, n)
		}
		if a.SHA256 != want {
			return fmt.Errorf("%w: server sha256 %s: want %s", errMismatch, a.SHA256, want)
		}
		return nil
	}()
	return finish(res, start, err)
}

func finish(res transferResult, start time.Time, err error) transferResult {
	d := time.Since(start)
	res.Seconds = d.Seconds()
	res.Gbps = gbps(res.Bytes, d)
	res.Kind = classify(err)
	if errors.Is(err, errMismatch) {
		res.Kind = kindOther
	}
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

func runDownload(e env, args []string) int {
	return runTransfer(e, "download", args, download)
}

func runUpload(e env, args []string) int {
	return runTransfer(e, "upload", args, upload)
}

type transferFunc func(ctx context.Context, e env, base *url.URL, n, seed uint64, idle time.Duration, rate uint64) transferResult

func runTransfer(e env, cmd string, args []string, do transferFunc) int {
	fs := newFlagSet(cmd, "--url URL --bytes N [--seed S] [--timeout D] [--rate N] [--json]")
	rawURL := fs.String("url", "", "base `URL` of an l4echo server (http only; the path is replaced)")
	var n sizeFlag
	fs.Var(&n, "bytes", "`size` to transfer: 1048576, 64KiB, 256MiB, 1G, ...")
	seed := fs.Uint64("seed", 1, "seed of the byte stream")
	var rate sizeFlag
	if cmd == "download" {
		fs.Var(&rate, "rate", "read at most `N` bytes a second (e.g. 16MiB), for a long transfer; 0: as fast as possible")
	}
	idle := fs.Duration("timeout", 5*time.Second, "give up when no data moved for this long")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	cc := fs.String("cc", "", "TCP congestion control `ALG` of this program's sockets (default: the system's)")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	e = e.withCC(*cc)
	u, err := parseHTTPURL(*rawURL)
	if err != nil {
		return usageError(e, fs, "--url %q: %v", *rawURL, err)
	}
	if n == 0 {
		return usageError(e, fs, "--bytes %d: must be at least 1", n)
	}
	if *idle <= 0 {
		return usageError(e, fs, "--timeout %v: must be positive", *idle)
	}
	res := do(e.ctx, e, u, uint64(n), *seed, *idle, uint64(rate))
	if *asJSON {
		out, _ := json.Marshal(res)
		fmt.Fprintf(e.stdout, "%s\n", out)
	} else {
		fmt.Fprint(e.stdout, res.text())
	}
	if !res.OK {
		return exitFail
	}
	return exitOK
}

package relaybench_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// With RELAYBENCH_APART=1 the load and paced phases run their writers in a
// process of their own, as a deployment runs the API beside `shop relay`,
// rather than as goroutines of the process that relays (and consumes the
// sink). The child is this test binary again, started with childEnv set;
// it attaches to the contender's database or broker, runs the writers,
// and streams each commit to the parent on its stdout as a record of
// recordSize bytes: the event's id and the commit's time (Unix ns). The
// parent adds them to its recorder, so the sink, the samples of the
// backlog and the latencies work as they do with writers in process.
//
// A record with the nil id is a signal: markReady once the child is
// attached (the parent then takes its CPU snapshot and sends the go byte
// on the child's stdin), markDone once the writers have stopped. The child
// then waits for its stdin to close, so that it is still running when the
// parent takes the phase's last CPU snapshot.

const (
	childEnv   = "RELAYBENCH_CHILD"
	recordSize = 16 + 8
	markReady  = 1
	markDone   = 2
)

// childSpec is what the child needs to attach and write.
type childSpec struct {
	contender  string
	dbURL      string
	amqpURL    string
	writers    int
	d          time.Duration
	rate       float64
	nice       int // the child's nice value, through nice(1); 0: as the parent
	maxPending int // the writers' outbox bound (config.maxPending)
}

func (s childSpec) env() []string {
	return []string{
		childEnv + "=writers",
		"RELAYBENCH_CHILD_CONTENDER=" + s.contender,
		"RELAYBENCH_CHILD_DB=" + s.dbURL,
		"RELAYBENCH_CHILD_AMQP=" + s.amqpURL,
		"RELAYBENCH_CHILD_WRITERS=" + strconv.Itoa(s.writers),
		"RELAYBENCH_CHILD_DURATION=" + s.d.String(),
		"RELAYBENCH_CHILD_RATE=" + strconv.FormatFloat(s.rate, 'f', -1, 64),
		"RELAYBENCH_CHILD_MAX_PENDING=" + strconv.Itoa(s.maxPending),
	}
}

func childSpecFromEnv() (childSpec, error) {
	s := childSpec{
		contender: os.Getenv("RELAYBENCH_CHILD_CONTENDER"),
		dbURL:     os.Getenv("RELAYBENCH_CHILD_DB"),
		amqpURL:   os.Getenv("RELAYBENCH_CHILD_AMQP"),
	}
	var err1, err2, err3, err4 error
	s.writers, err1 = strconv.Atoi(os.Getenv("RELAYBENCH_CHILD_WRITERS"))
	s.d, err2 = time.ParseDuration(os.Getenv("RELAYBENCH_CHILD_DURATION"))
	s.rate, err3 = strconv.ParseFloat(os.Getenv("RELAYBENCH_CHILD_RATE"), 64)
	s.maxPending, err4 = strconv.Atoi(os.Getenv("RELAYBENCH_CHILD_MAX_PENDING"))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return s, fmt.Errorf("writers child: %w", err)
	}
	return s, nil
}

// writersChild is the child's main: it returns the exit code.
func writersChild() int {
	if err := runWritersChild(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench writers:", err)
		return 1
	}
	return 0
}

func runWritersChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	spec, err := childSpecFromEnv()
	if err != nil {
		return err
	}
	var c *contender
	for _, k := range contenders() {
		if k.name == spec.contender {
			c = &k
		}
	}
	if c == nil || c.writers == nil {
		return fmt.Errorf("no writers for contender %q", spec.contender)
	}
	sys, closeSys, err := c.writers(ctx, config{writers: spec.writers, maxPending: spec.maxPending}, spec.dbURL, spec.amqpURL)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer closeSys()

	out := &recordWriter{w: bufio.NewWriterSize(stdout, 64<<10)}
	if err := out.mark(markReady); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(stdin, b[:]); err != nil {
		return fmt.Errorf("wait for the go: %w", err)
	}
	stopProfile, err := profileCPU(os.Getenv("RELAYBENCH_WRITERS_CPUPROFILE"))
	if err != nil {
		return err
	}
	// Flush every 10 ms, so that the parent's count trails the commits by
	// no more than that (each record carries its own time).
	flushing, stopFlushing := context.WithCancel(ctx)
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-flushing.Done():
				return
			case <-tick.C:
				_ = out.flush()
			}
		}
	}()
	rec := newRecorder(0)
	rec.stream = out.add
	werr := runWriters(ctx, sys, rec, spec.writers, spec.d, spec.rate)
	stopProfile()
	stopFlushing()
	<-flushed
	if err := out.mark(markDone); err != nil {
		return errors.Join(werr, err)
	}
	if werr != nil {
		return werr
	}
	_, _ = io.Copy(io.Discard, stdin) // until the parent closes it
	return nil
}

// profileCPU writes a CPU profile of the writers to path, when it is not
// empty, until the returned function is called.
func profileCPU(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// recordWriter writes records to the parent.
type recordWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

func (r *recordWriter) add(id uuid.UUID, at time.Time) {
	var buf [recordSize]byte
	copy(buf[:16], id[:])
	binary.LittleEndian.PutUint64(buf[16:], uint64(at.UnixNano()))
	r.mu.Lock()
	if _, err := r.w.Write(buf[:]); err != nil && r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *recordWriter) mark(kind uint64) error {
	r.add(uuid.Nil, time.Unix(0, int64(kind)))
	return r.flush()
}

func (r *recordWriter) flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = r.w.Flush()
	}
	return r.err
}

// writersApart is a running writers child, seen from the parent.
type writersApart struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan struct{}
	done   chan struct{}
	failed chan error // the reader's end: nil when the stream ended with markDone
	stderr *limitedBuffer
}

// startWritersApart starts the child and waits until it is attached.
func startWritersApart(ctx context.Context, spec childSpec, rec *recorder) (*writersApart, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-test.run=^$")
	if spec.nice > 0 {
		// nice(1) sets the value before the exec, so every thread of the
		// child has it; setpriority(2) on a running Go process would reach
		// one thread.
		cmd = exec.CommandContext(ctx, "nice", "-n", strconv.Itoa(spec.nice), self, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), spec.env()...)
	w := &writersApart{cmd: cmd, ready: make(chan struct{}), done: make(chan struct{}), failed: make(chan error, 1), stderr: &limitedBuffer{max: 8 << 10}}
	cmd.Stderr = w.stderr
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start writers: %w", err)
	}
	go func() { w.failed <- w.read(stdout, rec) }()
	select {
	case <-w.ready:
		return w, nil
	case err := <-w.failed:
		w.failed <- err
		return nil, w.stop(err)
	}
}

// read adds the child's records to rec until markDone or the stream's end.
func (w *writersApart) read(stdout io.Reader, rec *recorder) error {
	r := bufio.NewReaderSize(stdout, 64<<10)
	var buf [recordSize]byte
	for {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return fmt.Errorf("writers stopped before they were done: %w", err)
		}
		id := uuid.UUID(buf[:16])
		ns := int64(binary.LittleEndian.Uint64(buf[16:]))
		if id != uuid.Nil {
			rec.add(id, time.Unix(0, ns))
			continue
		}
		switch ns {
		case markReady:
			close(w.ready)
		case markDone:
			close(w.done)
			return nil
		default:
			return fmt.Errorf("writers sent an unknown signal %d", ns)
		}
	}
}

// run lets the writers go and waits until they are done.
func (w *writersApart) run() error {
	if _, err := w.stdin.Write([]byte{1}); err != nil {
		return w.stop(fmt.Errorf("start writers: %w", err))
	}
	if err := <-w.failed; err != nil {
		return w.stop(err)
	}
	return nil
}

// stop closes the child's stdin, which ends it, and waits for it; cause,
// when not nil, is why, and comes back with what the child said.
func (w *writersApart) stop(cause error) error {
	_ = w.stdin.Close()
	err := w.cmd.Wait()
	if cause == nil && err == nil {
		return nil
	}
	return fmt.Errorf("writers apart: %w (%s)", errors.Join(cause, err), w.stderr.String())
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p[:min(len(p), max(0, l.max-len(l.b)))]...)
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// Package logwriter writes a process's log lines in batches: one write(2)
// for the lines of a few milliseconds instead of one per line.
//
// An info or debug line is queued and written at most Delay later, with the
// lines queued after it; a warning or worse is written before its Write
// returns, after every line queued before it (zerolog's Fatal exits right
// after writing). Close writes what is queued: a clean stop loses no line.
// A crash (SIGKILL, a runtime fatal error) loses the lines of the last Delay
// at most. Lines are never dropped: when maxQueued bytes wait, a line is
// written at once, with them.
package logwriter

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

const (
	// maxQueued bounds the bytes waiting for the flusher.
	maxQueued = 256 << 10
	// maxKept: larger buffers are left to the garbage collector.
	maxKept = 1 << 20
)

// Writer is an io.Writer and a zerolog.LevelWriter over out. Each Write
// must be whole lines (zerolog writes one event per call): lines are
// written whole, in the order of their Writes.
type Writer struct {
	out   io.Writer
	delay time.Duration

	mu   sync.Mutex
	cond sync.Cond // signalled when the turn to write is free
	// writing is the turn to write to out, held by one goroutine at a time.
	writing bool
	buf     []byte // queued lines
	spare   []byte // the next buf, owned by the goroutine holding the turn
	// pending: the flusher was told about the queued lines.
	pending bool
	closed  bool
	err     error // the first write error

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Writer over out that writes a queued line at most delay
// later. Close it to write what is queued and stop its goroutine.
func New(out io.Writer, delay time.Duration) *Writer {
	w := &Writer{out: out, delay: delay, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	w.cond.L = &w.mu
	go w.flusher()
	return w
}

// Write queues p; the flusher writes it at most the delay later.
func (w *Writer) Write(p []byte) (int, error) { return w.write(p, false) }

// WriteLevel is Write, but a warning or worse is written before it returns.
func (w *Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	return w.write(p, l >= zerolog.WarnLevel && l < zerolog.NoLevel)
}

func (w *Writer) write(p []byte, now bool) (int, error) {
	w.mu.Lock()
	if !now && !w.closed && len(w.buf)+len(p) <= maxQueued {
		w.buf = append(w.buf, p...)
		kick := !w.pending
		w.pending = true
		w.mu.Unlock()
		if kick {
			select {
			case w.kick <- struct{}{}:
			default: // already told
			}
		}
		return len(p), nil
	}
	w.mu.Unlock()
	if err := w.flush(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes the queued lines, then p, in one write.
func (w *Writer) flush(p []byte) error {
	w.mu.Lock()
	for w.writing {
		w.cond.Wait()
	}
	w.writing = true
	b := w.buf
	w.buf = w.spare[:0]
	if p == nil { // the flusher's own turn: later lines need a new kick
		w.pending = false
	}
	w.mu.Unlock()

	b = append(b, p...)
	var err error
	if len(b) > 0 {
		_, err = w.out.Write(b)
	}
	w.spare = nil
	if cap(b) <= maxKept {
		w.spare = b[:0]
	}

	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
	w.writing = false
	w.cond.Broadcast()
	w.mu.Unlock()
	return err
}

// flusher writes the queued lines the delay after the first of them.
func (w *Writer) flusher() {
	defer close(w.done)
	t := time.NewTimer(w.delay)
	t.Stop()
	for {
		select {
		case <-w.kick:
		case <-w.quit:
			return
		}
		t.Reset(w.delay)
		select {
		case <-t.C:
		case <-w.quit:
			return // Close writes them
		}
		w.flush(nil)
	}
}

// Close writes the queued lines and stops the flusher; later writes go
// straight to out. It returns the first write error, if any.
func (w *Writer) Close() error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.quit)
		<-w.done
		w.flush(nil)
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

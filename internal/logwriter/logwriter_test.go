package logwriter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// out records each write.
type out struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (o *out) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes = append(o.writes, string(p))
	return len(p), o.err
}

func (o *out) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.writes...)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// Lines logged together go out in one write, the delay after the first.
func TestLinesWrittenTogetherAfterTheDelay(t *testing.T) {
	o := &out{}
	const delay = 30 * time.Millisecond
	w := New(o, delay)
	defer w.Close()
	start := time.Now()
	for _, l := range []string{"a\n", "b\n", "c\n"} {
		if n, err := w.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := o.get(); len(got) != 0 {
		t.Fatalf("written at once: %q", got)
	}
	waitFor(t, func() bool { return len(o.get()) > 0 })
	if took := time.Since(start); took < delay {
		t.Fatalf("written after %v, before the delay %v", took, delay)
	}
	if got := o.get(); len(got) != 1 || got[0] != "a\nb\nc\n" {
		t.Fatalf("writes %q", got)
	}
	// The next line starts a new batch.
	w.Write([]byte("d\n"))
	waitFor(t, func() bool { return len(o.get()) == 2 })
	if got := o.get(); got[1] != "d\n" {
		t.Fatalf("writes %q", got)
	}
}

// A warning or worse is written before its Write returns, after the lines
// queued before it, in the same write; info and debug lines wait.
func TestWarningWrittenAtOnceAfterQueuedLines(t *testing.T) {
	for _, tc := range []struct {
		level zerolog.Level
		now   bool
	}{{zerolog.DebugLevel, false}, {zerolog.InfoLevel, false}, {zerolog.NoLevel, false},
		{zerolog.WarnLevel, true}, {zerolog.ErrorLevel, true}, {zerolog.FatalLevel, true}, {zerolog.PanicLevel, true}} {
		o := &out{}
		w := New(o, time.Hour) // only a warning or Close writes
		log := zerolog.New(w)
		log.Info().Msg("first")
		log.Info().Msg("second")
		w.WriteLevel(tc.level, []byte("line at "+tc.level.String()+"\n"))
		want := `{"level":"info","message":"first"}` + "\n" + `{"level":"info","message":"second"}` + "\n" + "line at " + tc.level.String() + "\n"
		if got := o.get(); tc.now && (len(got) != 1 || got[0] != want) || !tc.now && len(got) != 0 {
			t.Errorf("%s: written %q before Close", tc.level, got)
		}
		w.Close()
		if got := strings.Join(o.get(), ""); got != want {
			t.Errorf("%s: written %q, want %q", tc.level, got, want)
		}
	}
}

// Close writes the queued lines; later lines go straight out.
func TestCloseWritesQueuedLines(t *testing.T) {
	o := &out{}
	w := New(o, time.Hour)
	w.Write([]byte("queued\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := o.get(); len(got) != 1 || got[0] != "queued\n" {
		t.Fatalf("written %q", got)
	}
	w.Write([]byte("after\n"))
	if got := o.get(); len(got) != 2 || got[1] != "after\n" {
		t.Fatalf("written %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// Many goroutines: every line exactly once and whole, each goroutine's in
// its order, in fewer writes than lines, all written when Close returns.
func TestConcurrentLinesAllWrittenWholeAndInOrder(t *testing.T) {
	o := &out{}
	w := New(o, time.Millisecond)
	log := zerolog.New(w)
	const goroutines, lines = 16, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				if i%100 == 99 {
					log.Warn().Int("g", g).Int("i", i).Msg("refused")
					continue
				}
				log.Info().Int("g", g).Int("i", i).Str("pad", strings.Repeat("x", i%50)).Msg("webhook")
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, goroutines)
	got := strings.Split(strings.TrimSuffix(strings.Join(o.get(), ""), "\n"), "\n")
	for _, l := range got {
		var g, i int
		var want string
		if strings.Contains(l, `"warn"`) {
			fmt.Sscanf(l, `{"level":"warn","g":%d,"i":%d`, &g, &i)
			want = fmt.Sprintf(`{"level":"warn","g":%d,"i":%d,"message":"refused"}`, g, i)
		} else {
			fmt.Sscanf(l, `{"level":"info","g":%d,"i":%d`, &g, &i)
			want = fmt.Sprintf(`{"level":"info","g":%d,"i":%d,"pad":"%s","message":"webhook"}`, g, i, strings.Repeat("x", i%50))
		}
		if l != want || next[g] != i {
			t.Fatalf("line %q: want %q, goroutine %d's line %d", l, want, g, next[g])
		}
		next[g]++
	}
	if len(got) != goroutines*lines {
		t.Fatalf("%d lines, want %d", len(got), goroutines*lines)
	}
	if writes := len(o.get()); writes >= len(got) {
		t.Fatalf("%d lines in %d writes", len(got), writes)
	}
}

// Lines beyond maxQueued are written at once with the queued ones: none is dropped.
func TestFullQueueWritten(t *testing.T) {
	o := &out{}
	w := New(o, time.Hour)
	defer w.Close()
	big := append(bytes.Repeat([]byte("x"), maxQueued-1), '\n')
	w.Write(big)
	if got := o.get(); len(got) != 0 {
		t.Fatalf("%d writes", len(got))
	}
	w.Write([]byte("more\n"))
	if got := o.get(); len(got) != 1 || got[0] != string(big)+"more\n" {
		t.Fatalf("%d writes", len(got))
	}
}

// A write error is returned by the Write that wrote, and by Close.
func TestWriteErrorReported(t *testing.T) {
	boom := errors.New("disk full")
	o := &out{err: boom}
	w := New(o, time.Hour)
	if _, err := w.WriteLevel(zerolog.ErrorLevel, []byte("x\n")); err != boom {
		t.Fatalf("Write error = %v", err)
	}
	if err := w.Close(); err != boom {
		t.Fatalf("Close error = %v", err)
	}
}

package wasm

import (
	"bytes"
	"sync"

	"github.com/frostdev/frost/internal/runtime"
)

// lineWriter turns a guest's stream into log lines. Lines longer than
// maxLogLine are split.
type lineWriter struct {
	in     *instance // whose guest writes: counts as host work
	sink   runtime.LogSink
	stream string
	mu     sync.Mutex
	buf    []byte
}

const maxLogLine = 8 << 10

func newLineWriter(in *instance, sink runtime.LogSink, stream string) *lineWriter {
	return &lineWriter{in: in, sink: sink, stream: stream}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.sink == nil {
		return len(p), nil
	}
	defer w.in.hostWork(copyWork(len(p)))
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLogLine {
				w.sink(w.stream, w.buf)
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.sink(w.stream, w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

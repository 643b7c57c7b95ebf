package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	p := progress(&buf, "uploading m.wasm")
	const total = 8 << 20
	for done := int64(0); done <= total; done += 1 << 20 {
		p(done, total)
	}
	want := []string{
		"uploading m.wasm: 0% (0.0 MiB of 8.0 MiB)",
		"uploading m.wasm: 25% (2.0 MiB of 8.0 MiB)",
		"uploading m.wasm: 50% (4.0 MiB of 8.0 MiB)",
		"uploading m.wasm: 75% (6.0 MiB of 8.0 MiB)",
		"uploading m.wasm: 100% (8.0 MiB of 8.0 MiB)",
	}
	if got := strings.Split(strings.TrimSpace(buf.String()), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	buf.Reset()
	small := progress(&buf, "uploading s.wasm")
	small(100, 100)
	if buf.Len() != 0 {
		t.Errorf("a small upload reported progress: %q", buf.String())
	}
}

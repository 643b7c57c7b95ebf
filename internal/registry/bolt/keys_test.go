package bolt

import (
	"bytes"
	"cmp"
	"testing"
)

// FuzzReleaseKey checks the two properties ListReleases and DeleteApp rely
// on: an app's prefix covers exactly its own release keys, and one app's keys
// sort by version.
func FuzzReleaseKey(f *testing.F) {
	f.Add("web", "web-2", 1, 2, "a", "b")
	f.Add("we", "web", -1, 1<<40, "", "z")
	f.Add("a\x00", "a", 0, 0, "\xff", "")
	f.Fuzz(func(t *testing.T, app1, app2 string, v1, v2 int, id1, id2 string) {
		k2 := releaseKey(app2, v2, id2)
		if got, want := bytes.HasPrefix(k2, appPrefix(app1)), app1 == app2; got != want {
			t.Fatalf("releaseKey(%q, …) has prefix of %q: %v, want %v", app2, app1, got, want)
		}
		if got, want := bytes.HasPrefix(idKey(app2, id2), appPrefix(app1)), app1 == app2; got != want {
			t.Fatalf("idKey(%q, …) has prefix of %q: %v, want %v", app2, app1, got, want)
		}
		if v1 != v2 {
			k1 := releaseKey(app2, v1, id1)
			if got, want := bytes.Compare(k1, k2), cmp.Compare(v1, v2); got != want {
				t.Fatalf("versions %d, %d: keys compare %d, want %d", v1, v2, got, want)
			}
		}
	})
}

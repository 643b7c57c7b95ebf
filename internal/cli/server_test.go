package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// A bad --sandbox-network is a usage error that names the flag, before
// anything starts.
func TestServerSandboxNetworkFlag(t *testing.T) {
	for _, v := range []string{"bogus", "10.0.0.0/30", "10.0.0.0/4", "fd00::/64", "10.0.0.1"} {
		var out, errb bytes.Buffer
		code := serverCmd(context.Background(), []string{"--data", t.TempDir(), "--sandbox-network", v}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "--sandbox-network") || !strings.Contains(errb.String(), "off") {
			t.Errorf("--sandbox-network %s: exit %d, %q", v, code, errb.String())
		}
	}
}

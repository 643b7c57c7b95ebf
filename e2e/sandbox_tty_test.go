package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testtool"
)

// TestSandboxTerminalCLI: `frost sandbox exec -t` in a real gVisor
// sandbox. With stdout a pipe the command still gets a terminal, 80x24,
// and the local $TERM.
// Run from a terminal (a pseudo-terminal this test opens, as a user's
// window), the CLI puts it in raw mode, the remote shell gets its size,
// typed keys (Enter as \r) reach it, a resize of the window reaches the
// shell, the shell's exit code is frost's, and the window is given back
// in the mode it was in.
func TestSandboxTerminalCLI(t *testing.T) {
	s, c := startSandboxServer(t, "")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	env := s.cliEnv(s.token)
	out, e, code := s.run(append(env, "TERM=vt100"), "sandbox", "exec", "-t", sb.ID, "--", "bash", "-c", "tty; stty size; echo term=$TERM")
	if code != 0 || !strings.HasPrefix(out, "/dev/pts/") || !strings.Contains(out, "\r\n24 80\r\nterm=vt100\r\n") {
		t.Fatalf("exec -t with stdout a pipe: %d %q %s", code, out, e)
	}

	window, tty := openPTY(t, 100, 30)
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(frostBin, "sandbox", "exec", "-t", sb.ID, "--", "bash", "--norc", "-i")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	screen := &testtool.SyncBuffer{} // what the window shows
	go io.Copy(screen, window)
	// until types keys (again every second) until the screen shows want.
	until := func(keys, want string) {
		t.Helper()
		for i := 0; i < 30; i++ {
			if keys != "" && i%10 == 0 {
				window.WriteString(keys)
			}
			if strings.Contains(screen.String(), want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("typed %q, the screen never showed %q:\n%q", keys, want, screen.String())
	}
	until("echo $((6*7))\r", "42\r\n")
	raw, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if raw.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 {
		t.Fatalf("the window is not in raw mode while the remote shell runs: lflag %#x", raw.Lflag)
	}
	until("stty size\r", "30 100\r\n")
	if err := unix.IoctlSetWinsize(int(window.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 132, Row: 43}); err != nil {
		t.Fatal(err)
	}
	until("stty size\r", "43 132\r\n")
	window.WriteString("exit 4\r")
	select {
	case err := <-exited:
		if cmd.ProcessState.ExitCode() != 4 {
			t.Fatalf("frost exited %v (%d), want the shell's 4; screen %q", err, cmd.ProcessState.ExitCode(), screen.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("frost did not exit with the shell; screen %q", screen.String())
	}
	after, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Fatalf("the window was left in another mode: lflag %#x → %#x", before.Lflag, after.Lflag)
	}
}

// openPTY opens a pseudo-terminal of cols×rows: the window's side (what a
// terminal emulator holds) and the terminal a program runs on.
func openPTY(t *testing.T, cols, rows uint16) (window, tty *os.File) {
	t.Helper()
	window, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { window.Close() })
	fd := int(window.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows}); err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return window, tty
}

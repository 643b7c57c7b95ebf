package cli

import (
	"os"
	"path/filepath"
)

// DefaultDataDir is where `frost server` keeps its state and where the CLI
// looks for the admin token when none is given: $FROST_DATA, else
// $XDG_DATA_HOME/frost, else ~/.local/share/frost.
func DefaultDataDir() string {
	if d := os.Getenv("FROST_DATA"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "frost")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "frost")
	}
	return filepath.Join(home, ".local", "share", "frost")
}

// AdminTokenFile is the name of the admin token file inside the data directory.
const AdminTokenFile = "admin.token"

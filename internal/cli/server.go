package cli

import (
	"context"
	"fmt"
	"io"
)

// serverCmd runs `frost server`. (Being written: see internal/server.)
func serverCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "frost server: not built yet")
	return 1
}

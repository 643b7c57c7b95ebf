package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// measureE2B runs gateway-bench.mjs (e2e/e2bsdk) in dir: E2B's SDK
// straight at the first node and through the gateway, alternating, n
// samples of each operation; it prints the script's table.
func measureE2B(c *cluster, dir string, n int) error {
	node := c.nodes[0]
	cmd := exec.Command("node", "gateway-bench.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"E2B_API_KEY=e2b_"+strings.TrimPrefix(c.token, "frost_"),
		"DIRECT_API="+node.api, "DIRECT_URL=http://"+node.http,
		"GW_API="+c.gw.api, "GW_URL=http://"+c.gw.http,
		"N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("node gateway-bench.mjs: %w", err)
	}
	fmt.Println("#### E2B's SDK straight at a node vs through the gateway")
	fmt.Println()
	fmt.Printf("The official E2B SDK (unmodified, over E2B_SANDBOX_URL) from one Node.js process: the same operations on a sandbox reached straight at %s (its control API and app listener) and on one reached through the gateway, alternating; medians.\n\n", node.name)
	fmt.Print(string(out))
	fmt.Println()
	return nil
}

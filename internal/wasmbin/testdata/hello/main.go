// Command hello is a small Go program built for GOOS=wasip1 by the wasmbin
// tests: it exercises goroutines, channels, maps, closures, fmt and sort, so
// that its output shows the rewritten module still runs the Go runtime
// correctly. With the argument "spin" it loops forever instead, for the
// interruption test.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "spin" {
		fmt.Println("spinning")
		n := 0
		for {
			n++
			if n < 0 {
				break
			}
		}
		fmt.Println(n)
		return
	}

	fmt.Println("hello from wasip1")

	results := make(chan int)
	for i := 1; i <= 4; i++ {
		go func(i int) {
			sum := 0
			for j := 0; j < i*1000; j++ {
				sum += j % 7
			}
			results <- sum
		}(i)
	}
	var sums []int
	for range 4 {
		sums = append(sums, <-results)
	}
	sort.Ints(sums)
	fmt.Println("sums:", sums)

	words := map[string]int{}
	for _, w := range strings.Fields("the quick brown fox jumps over the lazy dog the end") {
		words[w]++
	}
	keys := make([]string, 0, len(words))
	for k := range words {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s=%d ", k, words[k])
	}
	fmt.Println()
	fmt.Println("fib(25) =", fib(25))
}

func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

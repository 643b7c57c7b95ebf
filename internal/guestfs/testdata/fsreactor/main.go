// Command fsreactor is a wasip1 reactor (go build -buildmode=c-shared) whose
// exports guestfs's tests call many times on one instance, resetting the
// file system between calls the way Frost serves requests. The FS holds
// /state.txt ("base") when each call starts.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {}

// leaked is a descriptor kept open across calls, on purpose.
var leaked *os.File

// step reads /state.txt, appends to it, creates /scratch/n and prints what
// it saw. It returns 0 on success.
//
//go:wasmexport step
func step() int32 {
	b, err := os.ReadFile("/state.txt")
	if err != nil {
		fmt.Println("read:", err)
		return 1
	}
	ents, err := os.ReadDir("/")
	if err != nil {
		fmt.Println("readdir:", err)
		return 1
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	fmt.Printf("state=%s root=%s\n", b, strings.Join(names, ","))

	f, err := os.OpenFile("/state.txt", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	_, err = f.WriteString("+x")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll("/scratch", 0o755)
	}
	if err == nil {
		err = os.WriteFile("/scratch/n", []byte("tmp"), 0o644)
	}
	if err != nil {
		fmt.Println("write:", err)
		return 1
	}
	return 0
}

// leak opens /state.txt and keeps it open. It returns 0 on success.
//
//go:wasmexport leak
func leak() int32 {
	f, err := os.OpenFile("/state.txt", os.O_RDWR, 0)
	if err != nil {
		fmt.Println("leak:", err)
		return 1
	}
	leaked = f
	return 0
}

// useLeaked writes through the leaked descriptor. It returns 0 if the write
// failed, as it must after a Reset, and 1 if it got through.
//
//go:wasmexport useLeaked
func useLeaked() int32 {
	_, err := leaked.WriteAt([]byte("EVIL"), 0)
	fmt.Println("leaked write:", err)
	leaked.Close()
	if err != nil {
		return 0
	}
	return 1
}

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// uploadFigures are n E2B uploads sent at once (POST /files on the envd
// route, as the SDK's files.write([...]) sends them), each of two 8 MiB
// files, one whole batch: what the server's resident memory rose to
// above where it was, and how long they took.
type uploadFigures struct {
	n        int
	before   int64 // the server's VmRSS, bytes
	peak     int64 // its highest VmRSS while they ran
	took     time.Duration
	fileSize int
}

// measureUploadMemory sends the n uploads to sandbox id, sampling the
// server's resident memory every 5 ms, and checks one file of each.
func measureUploadMemory(srv endpoints, id, token string, n int) uploadFigures {
	f := uploadFigures{n: n, fileSize: 8 << 20}
	bodies := make([][]byte, n)
	types := make([]string, n)
	for i := range bodies {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for j := range 2 {
			// The same two paths in every upload: the sandbox's files
			// are its memory, and 32 uploads of their own would fill it.
			w, _ := mw.CreateFormFile("file", fmt.Sprintf("/root/up/f%d", j))
			data := make([]byte, f.fileSize)
			rand.Read(data)
			w.Write(data)
		}
		mw.Close()
		bodies[i], types[i] = b.Bytes(), mw.FormDataContentType()
	}
	f.before = rss(srv.pid)
	var peak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, rss(srv.pid))
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", "http://"+srv.http+"/files", bytes.NewReader(bodies[i]))
			req.Header.Set("Content-Type", types[i])
			req.Header.Set("E2b-Sandbox-Id", id)
			req.Header.Set("X-Access-Token", token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				log.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || strings.Count(string(b), `"type":"file"`) != 2 {
				log.Fatalf("upload %d: %d %s", i, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	f.took = time.Since(t0)
	close(stop)
	<-sampled
	f.peak = peak
	return f
}

// rss is process pid's resident memory, bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (f uploadFigures) print() {
	fmt.Printf("### %d E2B uploads at once (two %d MiB files each, one POST /files)\n\n", f.n, f.fileSize>>20)
	fmt.Println("| server VmRSS before | peak while they ran | rise | all done in |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| %d MiB | %d MiB | %d MiB | %.2f s |\n\n", f.before>>20, f.peak>>20, (f.peak-f.before)>>20, f.took.Seconds())
}

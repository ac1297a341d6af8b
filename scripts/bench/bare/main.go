// Command bare is the reference of the read benchmark: a bare net/http
// handler answering a small JSON document, the ceiling of an HTTP server
// on this machine. Usage: bare ADDR
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bare ADDR")
		os.Exit(2)
	}
	body := []byte(`{"id":"01a2129f-b5a7-716a-a5b4-264d7f737631","sku":"MUG-1","name":"Mug","price_cents":1200,"stock_available":8,"version":2}`)
	http.HandleFunc("GET /v1/products/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	if err := http.ListenAndServe(os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

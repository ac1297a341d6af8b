package main_test

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/testenv"
)

// TestReadmeWalkthroughWorksPasted runs the README's "Try it" block as a
// user pastes it, against a `shop run` of the test's own: the same
// commands, with the test's binary for ./bin/shop and its API's address for
// localhost:8080, and `make up` done by the test. It must end with the order
// confirmed and the stock taken.
func TestReadmeWalkthroughWorksPasted(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walkthrough needs %s: %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	testenv.Must(t, err, "read README")
	block := regexp.MustCompile("(?s)## Try it\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal(`README has no "## Try it" section with a sh block`)
	}
	script := string(block[1])
	for _, expected := range []string{"make up\n", "api=localhost:8080 ", "./bin/shop user add"} {
		if !strings.Contains(script, expected) {
			t.Fatalf("the walkthrough no longer has %q; this test replaces it:\n%s", expected, script)
		}
	}

	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	run, addr := startServing(t, env, "run") // what make up does
	script = strings.Replace(script, "make up\n", "", 1)
	script = strings.Replace(script, "api=localhost:8080 ", "api="+addr+" ", 1)
	script = strings.ReplaceAll(script, "./bin/shop ", shopBin+" ")
	// On a loaded machine the flow may take longer than one min_version
	// wait (2 s): then the order reads pending, and, as its user would, the
	// test asks again (each read waits on the server, no sleep here).
	script += `for attempt in $(seq 15); do
  curl -s -H "Authorization: Bearer $ann" "$api/v1/orders/$order?min_version=2" | grep -q '"status":"confirmed"' && break
  echo "read again: attempt $attempt"
done
curl -s "$api/v1/products/$product"
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Env = environ(env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "read again") {
		t.Logf("the order was read again before it showed confirmed:\n%s", out)
	}
	for _, want := range []string{`"status":"confirmed"`, `"version":2`, `"stock_available":8`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the walkthrough printed no %s:\n%s", want, out)
		}
	}
	stop(t, run)
}

package testenv_test

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"

	"github.com/shopdev/shop/internal/testenv"
)

// The CPU a benchmark's own child processes use counts as the benchmark's,
// under "its children", not as another program's.
func TestCPUOfChildrenCountsAsTheBenchmarks(t *testing.T) {
	// The child spins for a while, says so, and waits for its stdin to
	// close, so that it is still there at the second snapshot.
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo spun; read x`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	before := testenv.SnapCPU()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "spun\n" {
		t.Fatalf("child said %q, %v", line, err)
	}
	use := testenv.SnapCPU().Since(before)

	if use.By["bench children"] <= 0 {
		t.Errorf("the child's CPU is not counted as the benchmark's children: %v", use.By)
	}
	if s := use.String(); !strings.Contains(s, "its children") {
		t.Errorf("String() does not show the children: %s", s)
	}
}

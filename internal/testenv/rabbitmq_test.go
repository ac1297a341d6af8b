package testenv_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/shopdev/shop/internal/testenv"
)

func listed(t *testing.T, vhost string) bool {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "list_vhosts", "-q", "--no-table-headers", "name").CombinedOutput()
	testenv.Must(t, err, "rabbitmqctl list_vhosts")
	for line := range strings.Lines(string(out)) {
		if strings.TrimSpace(line) == vhost {
			return true
		}
	}
	return false
}

func TestDeleteVHostDeletesAndToleratesAVHostAlreadyGone(t *testing.T) {
	t.Parallel()
	vhost := testenv.VHost(t)
	if !listed(t, vhost) {
		t.Fatalf("vhost %s not listed after VHost", vhost)
	}
	testenv.DeleteVHost(t, vhost)
	if listed(t, vhost) {
		t.Fatalf("vhost %s still listed after DeleteVHost", vhost)
	}
	testenv.DeleteVHost(t, vhost) // gone already: no failure, and again at cleanup
}

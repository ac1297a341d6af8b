package main_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
)

// The Kubernetes manifests as far as these tests read them.
type (
	kustomization struct {
		Resources          []string    `yaml:"resources"`
		ConfigMapGenerator []generator `yaml:"configMapGenerator"`
		SecretGenerator    []generator `yaml:"secretGenerator"`
	}
	generator struct {
		Name     string   `yaml:"name"`
		Literals []string `yaml:"literals"`
		Envs     []string `yaml:"envs"`
	}
	manifest struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []container `yaml:"initContainers"`
					Containers     []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
	}
	probe struct {
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"` // a number or a port's name
		} `yaml:"httpGet"`
	}
)

const deployDir = "../../deploy/kubernetes"

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	testenv.Must(t, err, "read "+path)
	testenv.Must(t, yaml.Unmarshal(raw, v), "parse "+path)
}

// deployments returns the Deployments of the base's resources.
func deployments(t *testing.T) []manifest {
	t.Helper()
	var base kustomization
	readYAML(t, filepath.Join(deployDir, "base", "kustomization.yaml"), &base)
	var out []manifest
	for _, file := range base.Resources {
		raw, err := os.ReadFile(filepath.Join(deployDir, "base", file))
		testenv.Must(t, err, "read "+file)
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		for {
			var m manifest
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("parse %s: %v", file, err)
			}
			if m.Kind == "Deployment" {
				out = append(out, m)
			}
		}
	}
	return out
}

// devEnvironment returns what a container of the dev overlay finds in its
// environment: the base's ConfigMap merged with the overlay's, and the
// overlay's Secret, whose JWT_SECRET comes from secrets.env, a file each
// user makes (README) and git ignores; here it gets a random secret.
func devEnvironment(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	literals := func(gens []generator) {
		for _, g := range gens {
			for _, l := range g.Literals {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					t.Fatalf("%s: literal %q is not KEY=VALUE", g.Name, l)
				}
				env[k] = v
			}
		}
	}
	var base, dev kustomization
	readYAML(t, filepath.Join(deployDir, "base", "kustomization.yaml"), &base)
	readYAML(t, filepath.Join(deployDir, "dev", "kustomization.yaml"), &dev)
	literals(base.ConfigMapGenerator)
	literals(dev.ConfigMapGenerator)
	literals(dev.SecretGenerator)
	var envs []string
	for _, g := range dev.SecretGenerator {
		envs = append(envs, g.Envs...)
	}
	if !slices.Equal(envs, []string{"secrets.env"}) {
		t.Fatalf("the dev overlay's Secret reads %v, want secrets.env (where each user's JWT_SECRET is)", envs)
	}
	ignored, err := exec.Command("git", "check-ignore", "-q", filepath.Join(deployDir, "dev", "secrets.env")).CombinedOutput()
	if err != nil {
		t.Fatalf("git does not ignore deploy/kubernetes/dev/secrets.env: a user's JWT_SECRET could be committed (%v %s)", err, ignored)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	env["JWT_SECRET"] = hex.EncodeToString(secret)
	return env
}

// probePort returns the container port a probe names, by number or name.
func probePort(t *testing.T, c container, p *probe) int {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("container %s: a probe is not an HTTP GET", c.Name)
	}
	if n, err := strconv.Atoi(p.HTTPGet.Port.Value); err == nil {
		return n
	}
	for _, port := range c.Ports {
		if port.Name == p.HTTPGet.Port.Value {
			return port.ContainerPort
		}
	}
	t.Fatalf("container %s: probe port %q is none of its ports", c.Name, p.HTTPGet.Port.Value)
	return 0
}

// TestKubernetesManifestsMatchTheCommands checks what the manifests say
// against what shop is: every consumer group has one Deployment, every
// container runs a shop command of the image the overlays name, and every
// setting they give is one the README documents.
func TestKubernetesManifestsMatchTheCommands(t *testing.T) {
	t.Parallel()
	groups := map[string]int{}
	for _, d := range deployments(t) {
		for _, c := range slices.Concat(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers) {
			if c.Image != "shop" {
				t.Errorf("%s/%s: image %q, want shop (the name base/kustomization.yaml maps to a registry)", d.Metadata.Name, c.Name, c.Image)
			}
			if len(c.Args) == 0 {
				t.Errorf("%s/%s: no args: the image would run its default command", d.Metadata.Name, c.Name)
				continue
			}
			switch c.Args[0] {
			case "api", "relay", "migrate":
			case "consume":
				for _, g := range c.Args[1:] {
					groups[g]++
				}
			default:
				t.Errorf("%s/%s: args %v: not a long-running shop command", d.Metadata.Name, c.Name, c.Args)
			}
		}
	}
	want := map[string]int{} // one Deployment for each group of the registry
	for _, g := range handlers.Names() {
		want[g] = 1
	}
	if !maps.Equal(groups, want) {
		t.Errorf("consumer groups in the Deployments = %v, want each of %v once", groups, slices.Sorted(maps.Keys(want)))
	}

	readme, err := os.ReadFile("../../README.md")
	testenv.Must(t, err, "read README")
	documented := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `") {
			for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(line, -1) {
				documented[m[1]] = true
			}
		}
	}
	env := devEnvironment(t)
	for k := range env {
		if !documented[k] {
			t.Errorf("the manifests set %s, which the README's configuration table does not list", k)
		}
	}
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "AMQP_URL", "TRUSTED_PROXIES"} {
		if env[k] == "" {
			t.Errorf("the dev overlay does not give %s", k)
		}
	}
}

// TestKubernetesManifestsRunEveryProcess starts every container of the
// manifests the way a kubelet of the dev overlay would: the binary with the
// container's args and the environment of its ConfigMap and Secret, except
// that the databases' hosts point at this test's Postgres database,
// RabbitMQ vhost and Redis prefix, and that each listens on a free port of
// loopback instead of the port its probes name (checked to be the port of
// its HTTP_ADDR or METRICS_ADDR). Init containers must exit 0; then every
// other container must answer its readiness and liveness probes, and exit 0
// on SIGTERM.
func TestKubernetesManifestsRunEveryProcess(t *testing.T) {
	t.Parallel()
	s := newSystem(t) // a migrated database: the init containers must cope
	env := devEnvironment(t)
	if env["SHOP_ENV"] != "dev" {
		t.Fatalf("the dev overlay runs SHOP_ENV=%q, want dev", env["SHOP_ENV"])
	}
	maps.Copy(env, map[string]string{
		"DATABASE_URL": s.env["DATABASE_URL"], "AMQP_URL": s.env["AMQP_URL"],
		"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_PREFIX": s.env["REDIS_PREFIX"],
		"LOG_LEVEL": "info", // startServing reads the "listening" line
	})
	ds := deployments(t)
	for _, d := range ds {
		for _, c := range d.Spec.Template.Spec.InitContainers {
			if out, stderr, code := shop(t, env, c.Args...); code != 0 {
				t.Fatalf("init container %s/%s %v exited %d: %s %s", d.Metadata.Name, c.Name, c.Args, code, out, stderr)
			}
		}
	}
	type running struct {
		name string
		c    container
		addr string
		stop func()
	}
	var started []running
	for _, d := range ds {
		for _, c := range d.Spec.Template.Spec.Containers {
			name := d.Metadata.Name + "/" + c.Name
			setting := "METRICS_ADDR"
			if c.Args[0] == "api" {
				setting = "HTTP_ADDR"
			}
			_, port, err := net.SplitHostPort(env[setting])
			testenv.Must(t, err, name+": "+setting)
			for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe} {
				if got := probePort(t, c, p); strconv.Itoa(got) != port {
					t.Errorf("%s: a probe asks port %d, but %s=%s", name, got, setting, env[setting])
				}
			}
			cenv := maps.Clone(env)
			cenv[setting] = "127.0.0.1:0"
			cmd, addr := startServing(t, cenv, c.Args...)
			started = append(started, running{name: name, c: c, addr: addr, stop: func() { stop(t, cmd) }})
		}
	}
	for _, r := range started {
		for _, p := range []*probe{r.c.ReadinessProbe, r.c.LivenessProbe} {
			url := "http://" + r.addr + p.HTTPGet.Path
			testenv.Eventually(t, 30*time.Second, func() error {
				res, err := http.Get(url)
				if err != nil {
					return err
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: GET %s = %d", r.name, p.HTTPGet.Path, res.StatusCode)
				}
				return nil
			})
		}
	}
	for _, r := range started {
		r.stop()
	}
}

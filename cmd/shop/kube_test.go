package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// What these tests read of deploy/kubernetes.
const (
	kubeDir        = "../../deploy/kubernetes"
	kubeSchemasDir = kubeDir + "/schemas"
	kubeK8sSchemas = "kubernetes-v1.30.10-standalone-strict/" // under kubeSchemasDir
)

// kubeSchemaFiles maps each kind the manifests may hold (apiVersion and
// kind) to its JSON schema under deploy/kubernetes/schemas. An object of a
// kind not listed fails the test: add its schema (schemas/README.md says
// where they come from).
var kubeSchemaFiles = map[string]string{
	"v1/ConfigMap":                           kubeK8sSchemas + "configmap-v1.json",
	"v1/Namespace":                           kubeK8sSchemas + "namespace-v1.json",
	"v1/Secret":                              kubeK8sSchemas + "secret-v1.json",
	"v1/Service":                             kubeK8sSchemas + "service-v1.json",
	"apps/v1/Deployment":                     kubeK8sSchemas + "deployment-apps-v1.json",
	"autoscaling/v2/HorizontalPodAutoscaler": kubeK8sSchemas + "horizontalpodautoscaler-autoscaling-v2.json",
	"policy/v1/PodDisruptionBudget":          kubeK8sSchemas + "poddisruptionbudget-policy-v1.json",
	"networking.k8s.io/v1/Ingress":           kubeK8sSchemas + "ingress-networking-v1.json",
	"keda.sh/v1alpha1/ScaledObject":          "keda.sh/scaledobject_v1alpha1.json",
	"keda.sh/v1alpha1/TriggerAuthentication": "keda.sh/triggerauthentication_v1alpha1.json",
	"monitoring.coreos.com/v1/PodMonitor":    "monitoring.coreos.com/podmonitor_v1.json",
}

// kubeDrain is the longest a shop process takes to stop after SIGTERM:
// its parts stop by drainDeadline (the API's requests get shutdownTimeout,
// the consumers' router closes within 15 s, the relay's round within its
// confirm timeout + 5 s), then serveCmd flushes the traces for up to 5 s.
const kubeDrain = drainDeadline + 5*time.Second

// kubeObject is one object a kustomization rendered: its JSON, and what
// every kind has.
type kubeObject struct {
	raw        []byte
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
}

func (o kubeObject) String() string { return o.Kind + " " + o.Metadata.Name }

// as decodes the object into v, a struct of the fields a check reads.
func (o kubeObject) as(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(o.raw, v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}

// Kinds, as far as these tests read them.
type (
	kubeSelector  = testenv.LabelSelector
	kubeContainer struct {
		Name           string          `json:"name"`
		Image          string          `json:"image"`
		Args           []string        `json:"args"`
		LivenessProbe  *kubeProbe      `json:"livenessProbe"`
		ReadinessProbe *kubeProbe      `json:"readinessProbe"`
		Resources      json.RawMessage `json:"resources"`
		Lifecycle      *struct {
			PreStop *struct {
				Exec  *struct{ Command []string } `json:"exec"`
				Sleep *struct{ Seconds int64 }    `json:"sleep"`
			} `json:"preStop"`
		} `json:"lifecycle"`
	}
	kubeProbe struct {
		HTTPGet *struct {
			Path string `json:"path"`
		} `json:"httpGet"`
	}
	kubeDeployment struct {
		Spec struct {
			Replicas *int         `json:"replicas"`
			Selector kubeSelector `json:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
				Spec struct {
					TerminationGracePeriodSeconds *int64          `json:"terminationGracePeriodSeconds"`
					InitContainers                []kubeContainer `json:"initContainers"`
					Containers                    []kubeContainer `json:"containers"`
					TopologySpreadConstraints     []kubeSpread    `json:"topologySpreadConstraints"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	kubeSpread struct {
		TopologyKey       string       `json:"topologyKey"`
		WhenUnsatisfiable string       `json:"whenUnsatisfiable"`
		LabelSelector     kubeSelector `json:"labelSelector"`
	}
	kubeService struct {
		Spec struct {
			Selector map[string]string `json:"selector"`
			Ports    []kubeServicePort `json:"ports"`
		} `json:"spec"`
	}
	kubeServicePort struct {
		Name string `json:"name"`
		Port int    `json:"port"`
	}
	kubePDB struct {
		Spec struct {
			Selector       kubeSelector     `json:"selector"`
			MinAvailable   *json.RawMessage `json:"minAvailable"`
			MaxUnavailable *json.RawMessage `json:"maxUnavailable"`
		} `json:"spec"`
	}
	kubeHPA struct {
		Spec struct {
			ScaleTargetRef struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Name       string `json:"name"`
			} `json:"scaleTargetRef"`
			MinReplicas *int `json:"minReplicas"`
			MaxReplicas int  `json:"maxReplicas"`
			Metrics     []struct {
				Type     string `json:"type"`
				Resource *struct {
					Name string `json:"name"`
				} `json:"resource"`
			} `json:"metrics"`
		} `json:"spec"`
	}
	kubeScaledObject struct {
		Spec struct {
			ScaleTargetRef struct {
				Kind string `json:"kind"`
				Name string `json:"name"`
			} `json:"scaleTargetRef"`
			MinReplicaCount *int `json:"minReplicaCount"`
			MaxReplicaCount *int `json:"maxReplicaCount"`
			Triggers        []struct {
				Type              string            `json:"type"`
				Metadata          map[string]string `json:"metadata"`
				AuthenticationRef *struct {
					Kind string `json:"kind"`
					Name string `json:"name"`
				} `json:"authenticationRef"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	kubeTriggerAuthentication struct {
		Spec struct {
			SecretTargetRef []struct {
				Parameter string `json:"parameter"`
				Name      string `json:"name"`
				Key       string `json:"key"`
			} `json:"secretTargetRef"`
		} `json:"spec"`
	}
	kubeData struct {
		Data map[string]string `json:"data"`
	}
	kubeIngress struct {
		Spec struct {
			Rules []struct {
				HTTP struct {
					Paths []struct {
						Backend struct {
							Service struct {
								Name string `json:"name"`
								Port struct {
									Name   string `json:"name"`
									Number int    `json:"number"`
								} `json:"port"`
							} `json:"service"`
						} `json:"backend"`
					} `json:"paths"`
				} `json:"http"`
			} `json:"rules"`
		} `json:"spec"`
	}
)

// selects reports whether s selects pods of these labels (an empty
// selector selects nothing here, an unknown operator nothing either).
func selects(s kubeSelector, labels map[string]string) bool {
	ok, err := s.Selects(labels)
	return ok && err == nil
}

// kustomizationFile is what these tests read of a kustomization.yaml.
type kustomizationFile struct {
	Kind            string `yaml:"kind"`
	SecretGenerator []struct {
		Envs []string `yaml:"envs"`
	} `yaml:"secretGenerator"`
}

// kubeKustomizations returns the directories under deploy/kubernetes that
// hold a kustomization.yaml, by its kind: the overlays (Kustomization; base
// is one) and the components (Component), as paths relative to
// deploy/kubernetes.
func kubeKustomizations(t testing.TB) (overlays, components []string) {
	t.Helper()
	overlays, components, err := kubeFindKustomizations()
	if err != nil {
		t.Fatalf("list deploy/kubernetes: %v", err)
	}
	return overlays, components
}

func kubeFindKustomizations() (overlays, components []string, err error) {
	err = fs.WalkDir(os.DirFS(kubeDir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		var k kustomizationFile
		raw, err := os.ReadFile(filepath.Join(kubeDir, p))
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(raw, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		switch k.Kind {
		case "Kustomization", "":
			overlays = append(overlays, path.Dir(p))
		case "Component":
			components = append(components, path.Dir(p))
		default:
			return fmt.Errorf("%s: kind %q", p, k.Kind)
		}
		return nil
	})
	return overlays, components, err
}

// kubeCopy copies deploy/kubernetes to dir and gives every overlay the
// env files its secretGenerator reads, which git ignores (dev/secrets.env,
// prod/secrets.env): the committed secrets.env.example beside it, in place
// of a user's real one too, or else, if there is none, a throwaway
// JWT_SECRET.
func kubeCopy(dir string, overlays []string) error {
	if err := os.CopyFS(dir, os.DirFS(kubeDir)); err != nil {
		return err
	}
	for _, o := range overlays {
		var k kustomizationFile
		raw, err := os.ReadFile(filepath.Join(dir, o, "kustomization.yaml"))
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(raw, &k); err != nil {
			return err
		}
		for _, g := range k.SecretGenerator {
			for _, env := range g.Envs {
				file := filepath.Join(dir, o, env)
				content, err := os.ReadFile(file + ".example")
				if errors.Is(err, fs.ErrNotExist) {
					if _, err := os.Stat(file); err == nil {
						continue
					}
					content, err = []byte("JWT_SECRET="+strings.Repeat("k", 32)+"\n"), nil
				}
				if err != nil {
					return err
				}
				if err := os.WriteFile(file, content, 0o600); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// kubeBuild renders the kustomization in dir with kustomize's Go API, as
// kubectl apply -k would.
func kubeBuild(dir string) ([]kubeObject, error) {
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	var out []kubeObject
	for _, r := range rm.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		o := kubeObject{raw: raw}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// kubeRender renders every overlay of deploy/kubernetes once for all the
// tests, by its path relative to deploy/kubernetes.
var kubeRender = sync.OnceValues(func() (map[string][]kubeObject, error) {
	overlays, _, err := kubeFindKustomizations()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "shop-kube-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dir = filepath.Join(dir, "kubernetes")
	if err := kubeCopy(dir, overlays); err != nil {
		return nil, err
	}
	out := map[string][]kubeObject{}
	for _, o := range overlays {
		objs, err := kubeBuild(filepath.Join(dir, o))
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", o, err)
		}
		out[o] = objs
	}
	return out, nil
})

func kubeRendered(t *testing.T) map[string][]kubeObject {
	t.Helper()
	rendered, err := kubeRender()
	if err != nil {
		t.Fatalf("render deploy/kubernetes: %v", err)
	}
	return rendered
}

// kubeValidator validates objects against the committed schemas.
type kubeValidator map[string]*jsonschema.Schema

// kubeSchemas compiles every schema of kubeSchemaFiles, once.
var kubeSchemas = sync.OnceValues(func() (kubeValidator, error) {
	c := jsonschema.NewCompiler()
	v := kubeValidator{}
	for kind, file := range kubeSchemaFiles {
		f, err := os.Open(filepath.Join(kubeSchemasDir, file))
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		loc := "file:///schemas/" + file
		if err := c.AddResource(loc, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if v[kind], err = c.Compile(loc); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	return v, nil
})

func kubeSchemaValidator(t *testing.T) kubeValidator {
	t.Helper()
	v, err := kubeSchemas()
	if err != nil {
		t.Fatalf("compile deploy/kubernetes/schemas: %v", err)
	}
	return v
}

// validate checks one object against the schema of its kind.
func (v kubeValidator) validate(o kubeObject) error {
	sch, ok := v[o.APIVersion+"/"+o.Kind]
	if !ok {
		return fmt.Errorf("%s: no schema for %s %s in deploy/kubernetes/schemas (cmd/shop/kube_test.go, kubeSchemaFiles)", o, o.APIVersion, o.Kind)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(o.raw))
	if err != nil {
		return err
	}
	if err := sch.Validate(doc); err != nil {
		return fmt.Errorf("%s: %v", o, err)
	}
	return nil
}

// TestKubeOverlaysValidate builds every overlay under deploy/kubernetes
// with kustomize's Go API (the components through the overlays that list
// them) and validates every object against the committed schema of its
// kind: Kubernetes 1.30's, strict (an unknown field fails), and KEDA's and
// the Prometheus Operator's CRDs.
func TestKubeOverlaysValidate(t *testing.T) {
	t.Parallel()
	overlays, components := kubeKustomizations(t)
	for _, want := range []string{"base", "dev", "observability", "hpa-only", "prod"} {
		if !slices.Contains(overlays, want) {
			t.Errorf("no overlay deploy/kubernetes/%s (have %v)", want, overlays)
		}
	}
	for _, want := range []string{"autoscaling/keda", "autoscaling/hpa"} {
		if !slices.Contains(components, want) {
			t.Errorf("no component deploy/kubernetes/%s (have %v)", want, components)
		}
	}
	rendered := kubeRendered(t)
	v := kubeSchemaValidator(t)
	used := map[string]bool{}
	for _, overlay := range overlays {
		objs := rendered[overlay]
		if len(objs) == 0 {
			t.Errorf("overlay %s rendered nothing", overlay)
		}
		for _, o := range objs {
			used[kubeSchemaFiles[o.APIVersion+"/"+o.Kind]] = true
			if err := v.validate(o); err != nil {
				t.Errorf("overlay %s: %v", overlay, err)
			}
		}
	}
	// Every component is in some overlay: one of its objects is rendered.
	for _, c := range components {
		files, err := filepath.Glob(filepath.Join(kubeDir, c, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var head struct {
				Kind     string `yaml:"kind"`
				Metadata struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if yaml.Unmarshal(raw, &head) != nil || head.Metadata.Name == "" {
				continue
			}
			for _, objs := range rendered {
				found = found || slices.ContainsFunc(objs, func(o kubeObject) bool {
					return o.Kind == head.Kind && o.Metadata.Name == head.Metadata.Name
				})
			}
		}
		if !found {
			t.Errorf("component %s is in no overlay: nothing builds it", c)
		}
	}

	// The schemas committed are the ones used, each named in the README.
	readme, err := os.ReadFile(filepath.Join(kubeSchemasDir, "README.md"))
	if err != nil {
		t.Fatalf("read schemas/README.md: %v", err)
	}
	err = filepath.WalkDir(kubeSchemasDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "README.md" {
			return err
		}
		rel, _ := filepath.Rel(kubeSchemasDir, p)
		rel = filepath.ToSlash(rel)
		if !used[rel] {
			t.Errorf("schemas/%s validates no object of any overlay: remove it", rel)
		}
		if !strings.Contains(string(readme), path.Base(rel)) {
			t.Errorf("schemas/README.md does not say where %s comes from", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKubeSchemasRejectBrokenManifests: a kustomization whose objects
// carry a typo, a wrong type or a kind without a schema fails the
// validation that TestKubeOverlaysValidate runs on every overlay.
func TestKubeSchemasRejectBrokenManifests(t *testing.T) {
	t.Parallel()
	v := kubeSchemaValidator(t)
	deployment := func(container string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop-api}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
        - name: api
          image: shop
` + container
	}
	for _, c := range []struct {
		name, manifest string
		ok             bool
	}{
		{"a valid Deployment", deployment("          resources: {requests: {cpu: 100m}}\n"), true},
		{"an unknown field (resource: for resources:)", deployment("          resource: {requests: {cpu: 100m}}\n"), false},
		{"a wrong type (a port as a list)", deployment("          ports: [{containerPort: [8080]}]\n"), false},
		{"a misspelled preStop handler", deployment("          lifecycle: {preStop: {slep: {seconds: 5}}}\n"), false},
		{"a replica count as a string", strings.Replace(deployment(""), "spec:\n", "spec:\n  replicas: two\n", 1), false},
		{"an HPA of autoscaling/v2 written as v1", `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: shop-api}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shop-api}
  maxReplicas: 4
  targetCPUUtilizationPercentage: 70
`, false},
		{"a PodDisruptionBudget with an unknown field", `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: shop-api}
spec:
  maxUnavailable: 1
  selectors: {matchLabels: {app: shop}}
`, false},
		{"a valid ScaledObject", `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: shop-consume-orders}
spec:
  scaleTargetRef: {name: shop-consume-orders}
  triggers: [{type: rabbitmq, metadata: {queueName: shop.orders, mode: QueueLength, value: "100"}}]
`, true},
		{"a ScaledObject with HPA's field names", `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: shop-consume-orders}
spec:
  scaleTargetRef: {name: shop-consume-orders}
  minReplicas: 1
  triggers: [{type: rabbitmq, metadata: {queueName: shop.orders, mode: QueueLength, value: "100"}}]
`, false},
		{"a ScaledObject with a number where KEDA wants a string", `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: shop-consume-orders}
spec:
  scaleTargetRef: {name: shop-consume-orders}
  triggers: [{type: rabbitmq, metadata: {queueName: shop.orders, mode: QueueLength, value: 100}}]
`, false},
		{"a kind without a schema", `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec: {}
`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			files := map[string]string{
				"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [object.yaml]\n",
				"object.yaml":        c.manifest,
			}
			for name, content := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := kubeBuild(dir)
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			var errs []error
			for _, o := range objs {
				errs = append(errs, v.validate(o))
			}
			switch err := errors.Join(errs...); {
			case c.ok && err != nil:
				t.Errorf("rejected: %v", err)
			case !c.ok && err == nil:
				t.Errorf("accepted:\n%s", c.manifest)
			}
		})
	}
}

// kubeShopWorkloads returns an overlay's Deployments of shop's own (base
// labels them part-of shop), by name.
func kubeShopWorkloads(t *testing.T, objs []kubeObject) map[string]kubeDeployment {
	t.Helper()
	out := map[string]kubeDeployment{}
	for _, o := range objs {
		if o.Kind == "Deployment" && o.Metadata.Labels["app.kubernetes.io/part-of"] == "shop" {
			var d kubeDeployment
			o.as(t, &d)
			out[o.Metadata.Name] = d
		}
	}
	if len(out) == 0 {
		t.Fatal("no Deployment of shop (labelled app.kubernetes.io/part-of: shop)")
	}
	return out
}

// kubeOfKind returns the objects of one kind.
func kubeOfKind(objs []kubeObject, kind string) []kubeObject {
	var out []kubeObject
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// TestKubeWorkloads: in every overlay, every Deployment of shop runs a real
// shop command of one image, one Deployment per consumer group of the
// registry; every container has probes (the long-running ones) and
// requests and a memory limit; every Deployment has one
// PodDisruptionBudget that lets a drain proceed, spreads its pods over
// nodes, and gives its pods a grace period longer than the preStop sleep
// plus the process's drain; a Deployment behind a Service waits in preStop
// for its endpoints to go, without a shell (the image is distroless).
func TestKubeWorkloads(t *testing.T) {
	t.Parallel()
	for overlay, objs := range kubeRendered(t) {
		t.Run(overlay, func(t *testing.T) {
			t.Parallel()
			workloads := kubeShopWorkloads(t, objs)
			var services []kubeService
			for _, o := range kubeOfKind(objs, "Service") {
				var s kubeService
				o.as(t, &s)
				services = append(services, s)
			}
			pdbs := map[string]kubePDB{}
			for _, o := range kubeOfKind(objs, "PodDisruptionBudget") {
				var p kubePDB
				o.as(t, &p)
				pdbs[o.Metadata.Name] = p
			}
			apiMin := 0 // the API HPA's minReplicas
			for _, o := range kubeOfKind(objs, "HorizontalPodAutoscaler") {
				var h kubeHPA
				o.as(t, &h)
				if h.Spec.ScaleTargetRef.Name == "shop-api" && h.Spec.MinReplicas != nil {
					apiMin = *h.Spec.MinReplicas
				}
			}

			groups := map[string]int{}
			images := map[string]bool{}
			for name, d := range workloads {
				pod := d.Spec.Template.Spec
				labels := d.Spec.Template.Metadata.Labels
				if !selects(d.Spec.Selector, labels) {
					t.Errorf("%s: its selector does not select its pods' labels %v", name, labels)
				}
				command := ""
				for i, c := range slices.Concat(pod.InitContainers, pod.Containers) {
					init := i < len(pod.InitContainers)
					images[c.Image] = true
					if len(c.Args) == 0 {
						t.Errorf("%s/%s: no args: the image would run its default command", name, c.Name)
						continue
					}
					if _, _, err := lookup(c.Args); err != nil {
						t.Errorf("%s/%s: args %v are no shop command: %v", name, c.Name, c.Args, err)
					}
					var res struct {
						Requests map[string]string `json:"requests"`
						Limits   map[string]string `json:"limits"`
					}
					if len(c.Resources) > 0 {
						if err := json.Unmarshal(c.Resources, &res); err != nil {
							t.Fatal(err)
						}
					}
					if res.Requests["cpu"] == "" || res.Requests["memory"] == "" || res.Limits["memory"] == "" {
						t.Errorf("%s/%s: resources %s, want requests of cpu and memory and a memory limit", name, c.Name, c.Resources)
					}
					if init {
						continue
					}
					switch c.Args[0] {
					case "api", "relay":
						command = c.Args[0]
					case "consume":
						command = "consume"
						for _, g := range c.Args[1:] {
							groups[g]++
						}
					default:
						t.Errorf("%s/%s: args %v: not a long-running shop command", name, c.Name, c.Args)
					}
					for what, p := range map[string]*kubeProbe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
						if p == nil || p.HTTPGet == nil || p.HTTPGet.Path == "" {
							t.Errorf("%s/%s: no HTTP %s probe", name, c.Name, what)
						}
					}
				}
				if command == "" {
					continue
				}

				// Stopping: the preStop sleep, then SIGTERM and the drain,
				// within the grace period.
				var preStop time.Duration
				for _, c := range pod.Containers {
					if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
						continue
					}
					ps := c.Lifecycle.PreStop
					if ps.Exec != nil {
						t.Errorf("%s/%s: preStop runs %v: the image is distroless, with no shell or sleep (use the sleep action)", name, c.Name, ps.Exec.Command)
					}
					if ps.Sleep != nil {
						preStop = max(preStop, time.Duration(ps.Sleep.Seconds)*time.Second)
					}
				}
				served := slices.ContainsFunc(services, func(s kubeService) bool {
					return len(s.Spec.Selector) > 0 && selects(kubeSelector{MatchLabels: s.Spec.Selector}, labels)
				})
				if served && preStop == 0 {
					t.Errorf("%s: a Service sends it traffic, but no preStop sleep lets the endpoints go before SIGTERM", name)
				}
				grace := 30 * time.Second // Kubernetes's default
				if g := pod.TerminationGracePeriodSeconds; g != nil {
					grace = time.Duration(*g) * time.Second
				}
				if grace <= preStop+kubeDrain {
					t.Errorf("%s: terminationGracePeriodSeconds %v, want more than preStop %v + drain %v", name, grace, preStop, kubeDrain)
				}

				spread := slices.ContainsFunc(pod.TopologySpreadConstraints, func(c kubeSpread) bool {
					return c.TopologyKey == "kubernetes.io/hostname" && c.WhenUnsatisfiable == "ScheduleAnyway" && selects(c.LabelSelector, labels)
				})
				if !spread {
					t.Errorf("%s: no topology spread of its pods across nodes (kubernetes.io/hostname, ScheduleAnyway)", name)
				}

				var by []string
				for pname, p := range pdbs {
					if !selects(p.Spec.Selector, labels) {
						continue
					}
					by = append(by, pname)
					switch {
					case p.Spec.MaxUnavailable != nil && string(*p.Spec.MaxUnavailable) == "1" && p.Spec.MinAvailable == nil:
					case command == "api" && p.Spec.MinAvailable != nil && string(*p.Spec.MinAvailable) == "1" && p.Spec.MaxUnavailable == nil:
						if apiMin < 2 {
							t.Errorf("%s: PodDisruptionBudget %s keeps 1 available, but the API's HPA lets it run %d: a drain would wait forever", name, pname, apiMin)
						}
					default:
						t.Errorf("%s: PodDisruptionBudget %s: want maxUnavailable 1 (or minAvailable 1 for the API)", name, pname)
					}
				}
				if len(by) != 1 {
					t.Errorf("%s: selected by PodDisruptionBudgets %v, want exactly one", name, by)
				}
			}
			want := map[string]int{}
			for _, g := range handlers.Names() {
				want[g] = 1
			}
			if !maps.Equal(groups, want) {
				t.Errorf("consumer groups in the Deployments = %v, want each of %v once", groups, handlers.Names())
			}
			if len(images) != 1 {
				t.Errorf("shop's containers run images %v, want one", slices.Sorted(maps.Keys(images)))
			}
			for image := range images {
				if name, tag, ok := strings.Cut(path.Base(image), ":"); !ok || name != "shop" || tag == "" {
					t.Errorf("image %q: want the image the Dockerfile builds (…/shop:TAG), as the overlay's images: names it", image)
				}
			}
		})
	}
}

// kubeQueueTarget reads the derivation written beside a ScaledObject's
// target: "# target: N = F ev/s per replica (SOURCE) × S s".
var kubeQueueTarget = regexp.MustCompile(`^# target: ([0-9,]+) = ([0-9,]+) ev/s per replica \(([^)]+)\) × ([0-9]+) s$`)

// TestKubeAutoscaling: every overlay scales the API with an HPA on CPU and
// memory, 2 replicas at least. An overlay with KEDA (prod) has a
// ScaledObject for every consumer group of the registry, on its own queue
// shop.<group> by length, targeting the group's Deployment, and one for
// the relay (2 replicas at least) on the outbox's age, their
// TriggerAuthentications reading keys the overlay's Secret has; hpa-only
// has an HPA on CPU for every group instead, and no KEDA object. Nothing
// has two autoscalers, and no autoscaled Deployment sets replicas (every
// apply would reset the count).
func TestKubeAutoscaling(t *testing.T) {
	t.Parallel()
	rendered := kubeRendered(t)
	for overlay, objs := range rendered {
		t.Run(overlay, func(t *testing.T) {
			t.Parallel()
			workloads := kubeShopWorkloads(t, objs)
			groupDeployment := map[string]string{}
			for name, d := range workloads {
				for _, c := range d.Spec.Template.Spec.Containers {
					if len(c.Args) == 2 && c.Args[0] == "consume" {
						groupDeployment[c.Args[1]] = name
					}
				}
			}
			scaledBy := map[string][]string{}
			hpaMin := map[string]int{}
			for _, o := range kubeOfKind(objs, "HorizontalPodAutoscaler") {
				var h kubeHPA
				o.as(t, &h)
				ref := h.Spec.ScaleTargetRef
				if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" {
					t.Errorf("%s scales a %s %s, want apps/v1 Deployment", o, ref.APIVersion, ref.Kind)
				}
				if _, ok := workloads[ref.Name]; !ok {
					t.Errorf("%s scales %q, which is no Deployment of shop in the overlay", o, ref.Name)
				}
				scaledBy[ref.Name] = append(scaledBy[ref.Name], o.String())
				if h.Spec.MinReplicas != nil {
					hpaMin[ref.Name] = *h.Spec.MinReplicas
				}
				var metrics []string
				for _, m := range h.Spec.Metrics {
					if m.Type == "Resource" && m.Resource != nil {
						metrics = append(metrics, m.Resource.Name)
					}
				}
				want := []string{"cpu"}
				if ref.Name == "shop-api" {
					want = []string{"cpu", "memory"}
				}
				if slices.Sort(metrics); !slices.Equal(metrics, want) {
					t.Errorf("%s scales on %v, want %v", o, metrics, want)
				}
				if h.Spec.MaxReplicas < max(hpaMin[ref.Name], 1) {
					t.Errorf("%s: maxReplicas %d below minReplicas %d", o, h.Spec.MaxReplicas, hpaMin[ref.Name])
				}
			}
			if len(scaledBy["shop-api"]) != 1 || hpaMin["shop-api"] < 2 {
				t.Errorf("the API is scaled by %v with minReplicas %d, want one HPA with 2 at least", scaledBy["shop-api"], hpaMin["shop-api"])
			}

			// The Secret's keys, and what KEDA's TriggerAuthentications read.
			secrets := map[string]map[string]bool{}
			for _, o := range kubeOfKind(objs, "Secret") {
				var s kubeData
				o.as(t, &s)
				secrets[o.Metadata.Name] = map[string]bool{}
				for k := range s.Data {
					secrets[o.Metadata.Name][k] = true
				}
			}
			auths := map[string]bool{}
			for _, o := range kubeOfKind(objs, "TriggerAuthentication") {
				var a kubeTriggerAuthentication
				o.as(t, &a)
				auths[o.Metadata.Name] = true
				if len(a.Spec.SecretTargetRef) == 0 {
					t.Errorf("%s reads no Secret", o)
				}
				for _, ref := range a.Spec.SecretTargetRef {
					if keys, ok := secrets[ref.Name]; !ok {
						t.Errorf("%s reads Secret %s, which the overlay does not have (have %v)", o, ref.Name, slices.Sorted(maps.Keys(secrets)))
					} else if !keys[ref.Key] {
						t.Errorf("%s reads %s from Secret %s, which has no such key", o, ref.Key, ref.Name)
					}
				}
			}

			queues := map[string]string{} // group → the Deployment its ScaledObject scales
			relay := false
			for _, o := range kubeOfKind(objs, "ScaledObject") {
				var s kubeScaledObject
				o.as(t, &s)
				target := s.Spec.ScaleTargetRef.Name
				if k := s.Spec.ScaleTargetRef.Kind; k != "" && k != "Deployment" {
					t.Errorf("%s scales a %s, want a Deployment", o, k)
				}
				if _, ok := workloads[target]; !ok {
					t.Errorf("%s scales %q, which is no Deployment of shop in the overlay", o, target)
				}
				scaledBy[target] = append(scaledBy[target], o.String())
				minCount := 1 // KEDA's default minReplicaCount is 0: it must be written down
				if s.Spec.MinReplicaCount == nil {
					t.Errorf("%s: no minReplicaCount", o)
				} else {
					minCount = *s.Spec.MinReplicaCount
				}
				if s.Spec.MaxReplicaCount == nil || *s.Spec.MaxReplicaCount < max(minCount, 1) {
					t.Errorf("%s: maxReplicaCount %v, want one above minReplicaCount %d", o, s.Spec.MaxReplicaCount, minCount)
				}
				if len(s.Spec.Triggers) != 1 {
					t.Errorf("%s has %d triggers, want 1", o, len(s.Spec.Triggers))
					continue
				}
				tr := s.Spec.Triggers[0]
				if tr.AuthenticationRef == nil || !auths[tr.AuthenticationRef.Name] {
					t.Errorf("%s: authenticationRef %+v names no TriggerAuthentication of the overlay", o, tr.AuthenticationRef)
				}
				switch tr.Type {
				case "rabbitmq":
					group, ok := strings.CutPrefix(tr.Metadata["queueName"], "shop.")
					if !ok || !slices.Contains(handlers.Names(), group) {
						t.Errorf("%s: queueName %q is no group's queue shop.<group>", o, tr.Metadata["queueName"])
						continue
					}
					if prev, dup := queues[group]; dup {
						t.Errorf("%s: queue shop.%s is scaled on twice (also for %s)", o, group, prev)
					}
					queues[group] = target
					if target != groupDeployment[group] {
						t.Errorf("%s scales %s on queue shop.%s, whose group runs in %s", o, target, group, groupDeployment[group])
					}
					if tr.Metadata["mode"] != "QueueLength" {
						t.Errorf("%s: mode %q, want QueueLength", o, tr.Metadata["mode"])
					}
					if n, err := strconv.Atoi(tr.Metadata["value"]); err != nil || n < 1 {
						t.Errorf("%s: value %q, want a queue length per replica", o, tr.Metadata["value"])
					}
					if minCount != 1 && (group != "emails" || minCount != 0) {
						t.Errorf("%s: minReplicaCount %d, want 1 (0 for emails only)", o, minCount)
					}
				case "postgresql":
					if target != "shop-relay" {
						t.Errorf("%s: a postgresql trigger scales %s, want the relay", o, target)
					}
					relay = true
					if minCount < 2 {
						t.Errorf("%s: minReplicaCount %d, want 2: one relay publishes while the other restarts", o, minCount)
					}
					query := tr.Metadata["query"]
					if want := fmt.Sprintf("generate_series(0, %d)", outbox.Partitions-1); !strings.Contains(query, want) || !strings.Contains(query, "FROM outbox") {
						t.Errorf("%s: query %q does not read the head of each of the outbox's %d partitions (%s)", o, query, outbox.Partitions, want)
					}
					if f, err := strconv.ParseFloat(tr.Metadata["targetQueryValue"], 64); err != nil || f <= 0 {
						t.Errorf("%s: targetQueryValue %q, want seconds", o, tr.Metadata["targetQueryValue"])
					}
				default:
					t.Errorf("%s: trigger %q, want rabbitmq (a group's queue) or postgresql (the outbox)", o, tr.Type)
				}
			}

			keda := len(kubeOfKind(objs, "ScaledObject")) > 0
			for _, g := range handlers.Names() {
				d := groupDeployment[g]
				switch {
				case keda && queues[g] == "":
					t.Errorf("no ScaledObject scales group %s on its queue shop.%s", g, g)
				case !keda && overlay == "hpa-only" && len(scaledBy[d]) != 1:
					t.Errorf("group %s (%s) is scaled by %v, want one HPA", g, d, scaledBy[d])
				}
			}
			if keda && !relay {
				t.Error("no ScaledObject scales the relay")
			}
			switch overlay {
			case "prod":
				if !keda {
					t.Error("the prod overlay has no ScaledObject: it is the example with KEDA")
				}
			case "hpa-only", "base", "dev", "observability":
				if n := len(kubeOfKind(objs, "ScaledObject")) + len(kubeOfKind(objs, "TriggerAuthentication")); n > 0 {
					t.Errorf("%d KEDA objects: this overlay must apply to a cluster without KEDA's CRDs", n)
				}
			}
			for name, d := range workloads {
				if len(scaledBy[name]) > 1 {
					t.Errorf("%s is scaled by %v: two autoscalers fight", name, scaledBy[name])
				}
				if len(scaledBy[name]) == 1 && d.Spec.Replicas != nil {
					t.Errorf("%s is scaled by %s and sets replicas %d: every apply would reset the count", name, scaledBy[name][0], *d.Spec.Replicas)
				}
			}
		})
	}
}

// TestKubeKEDATargetsAreDerived: the length of its queue each group's
// ScaledObject targets per replica has its derivation beside it, and the
// arithmetic holds ("# target: N = F ev/s per replica (SOURCE) × S s");
// the figures come from BENCHMARKS.md, except the emails' with an SMTP
// server, which say so.
func TestKubeKEDATargetsAreDerived(t *testing.T) {
	t.Parallel()
	file := filepath.Join(kubeDir, "autoscaling", "keda", "scaledobjects.yaml")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	seen := map[string]bool{}
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", file, err)
		}
		triggers := kubeYAMLPath(&doc, "spec", "triggers")
		if triggers == nil {
			continue
		}
		for _, tr := range triggers.Content {
			meta := kubeYAMLPath(tr, "metadata")
			queue := kubeYAMLPath(meta, "queueName")
			value := kubeYAMLPath(meta, "value")
			if queue == nil || value == nil {
				continue
			}
			group := strings.TrimPrefix(queue.Value, "shop.")
			seen[group] = true
			m := kubeQueueTarget.FindStringSubmatch(value.LineComment)
			if m == nil {
				t.Errorf("%s: value %q has no derivation beside it like %q, but %q", queue.Value, value.Value,
					"# target: N = F ev/s per replica (BENCHMARKS.md, issue 17) × S s", value.LineComment)
				continue
			}
			n, f, s := kubeNumber(m[1]), kubeNumber(m[2]), kubeNumber(m[4])
			if n != f*s || strconv.Itoa(n) != value.Value {
				t.Errorf("%s: value %s, derivation %q: %d × %d = %d", queue.Value, value.Value, value.LineComment, f, s, f*s)
			}
			if group != "emails" && !strings.Contains(m[3], "BENCHMARKS.md") {
				t.Errorf("%s: the figure's source is %q, want BENCHMARKS.md", queue.Value, m[3])
			}
		}
	}
	for _, g := range handlers.Names() {
		if !seen[g] {
			t.Errorf("%s has no queue-length trigger for group %s", file, g)
		}
	}
}

// kubeYAMLPath follows mapping keys from n (a document or a mapping).
func kubeYAMLPath(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			n = n.Content[0]
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

func kubeNumber(s string) int {
	n, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
	if err != nil {
		return math.MinInt
	}
	return n
}

// TestKubeProdOverlay: the prod example runs nothing but shop (Postgres,
// RabbitMQ and Redis are external, in the cluster forms shop supports),
// reads its Secret from a git-ignored secrets.env whose committed example
// lists only keys shop or KEDA read, sets TRUSTED_PROXIES to CIDRs, and
// routes its Ingress to the API's Service; every overlay's ConfigMap sets
// only variables shop reads.
func TestKubeProdOverlay(t *testing.T) {
	t.Parallel()
	rendered := kubeRendered(t)
	known := knownVariables()
	for overlay, objs := range rendered {
		for _, o := range kubeOfKind(objs, "ConfigMap") {
			var c kubeData
			o.as(t, &c)
			for k := range c.Data {
				if !known[k] {
					t.Errorf("overlay %s: %s sets %s, which no shop command reads", overlay, o, k)
				}
			}
		}
	}

	objs := rendered["prod"]
	for _, o := range kubeOfKind(objs, "Deployment") {
		if o.Metadata.Labels["app.kubernetes.io/part-of"] != "shop" {
			t.Errorf("prod runs %s: its dependencies are external", o)
		}
	}
	if n := len(kubeOfKind(objs, "StatefulSet")); n > 0 {
		t.Errorf("prod runs %d StatefulSets: its dependencies are external", n)
	}

	example, err := os.ReadFile(filepath.Join(kubeDir, "prod", "secrets.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.Lines(string(example)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("secrets.env.example: %q is not KEY=VALUE", line)
			continue
		}
		env[k] = v
		if !known[k] && !strings.HasPrefix(k, "KEDA_") {
			t.Errorf("secrets.env.example sets %s, which neither shop nor KEDA (KEDA_*) reads", k)
		}
	}
	if u := env["DATABASE_URL"]; strings.Count(u, ",") < 1 || !strings.Contains(u, "target_session_attrs=read-write") {
		t.Errorf("the example DATABASE_URL %q does not name several hosts with target_session_attrs=read-write", u)
	}
	if n := len(strings.Split(env["AMQP_URL"], ",")); n != 3 {
		t.Errorf("the example AMQP_URL lists %d nodes, want a cluster of 3", n)
	}
	if !strings.HasPrefix(env["REDIS_URL"], "redis-sentinel://") {
		t.Errorf("the example REDIS_URL %q is not a redis-sentinel:// URL", env["REDIS_URL"])
	}
	for _, k := range []string{"KEDA_RABBITMQ_HOST", "KEDA_DATABASE_URL"} {
		u, err := url.Parse(env[k])
		if err != nil || u.Host == "" || strings.Contains(env[k], ",") {
			t.Errorf("the example %s %q is not one URL (KEDA takes a single host)", k, env[k])
		}
	}
	if env["JWT_SECRET"] == "" && env["JWT_KEYS"] == "" {
		t.Error("the example sets neither JWT_SECRET nor JWT_KEYS: shop api refuses to start")
	}
	if out, err := exec.Command("git", "check-ignore", "-q", filepath.Join(kubeDir, "prod", "secrets.env")).CombinedOutput(); err != nil {
		t.Errorf("git does not ignore deploy/kubernetes/prod/secrets.env: production secrets could be committed (%v %s)", err, out)
	}

	var config map[string]string
	for _, o := range kubeOfKind(objs, "ConfigMap") {
		var c kubeData
		o.as(t, &c)
		config = c.Data
	}
	proxies := strings.Split(config["TRUSTED_PROXIES"], ",")
	for _, p := range proxies {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(p)); err != nil {
			t.Errorf("prod's TRUSTED_PROXIES %q: %v", config["TRUSTED_PROXIES"], err)
		}
	}

	services := map[string]kubeService{}
	for _, o := range kubeOfKind(objs, "Service") {
		var s kubeService
		o.as(t, &s)
		services[o.Metadata.Name] = s
	}
	ingresses := kubeOfKind(objs, "Ingress")
	if len(ingresses) == 0 {
		t.Error("prod has no Ingress")
	}
	for _, o := range ingresses {
		var ing kubeIngress
		o.as(t, &ing)
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				s, ok := services[b.Name]
				if !ok {
					t.Errorf("%s routes to Service %q, which prod does not have", o, b.Name)
					continue
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(sp kubeServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}) {
					t.Errorf("%s routes to port %+v, which Service %s does not have", o, b.Port, b.Name)
				}
			}
		}
	}

	var data kubeData
	for _, o := range kubeOfKind(objs, "Secret") {
		o.as(t, &data)
	}
	for k, want := range env {
		got, err := base64.StdEncoding.DecodeString(data.Data[k])
		if err != nil || string(got) != want {
			t.Errorf("prod's Secret has %s = %q, want secrets.env's %q", k, got, want)
		}
	}
}

// TestKubeCheckDeployListsEveryOverlay: scripts/check-deploy.sh builds
// every overlay.
func TestKubeCheckDeployListsEveryOverlay(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../scripts/check-deploy.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^overlays=\(([^)]*)\)`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("scripts/check-deploy.sh has no overlays=(...) list")
	}
	listed := strings.Fields(m[1])
	overlays, _ := kubeKustomizations(t)
	slices.Sort(listed)
	slices.Sort(overlays)
	if !slices.Equal(listed, overlays) {
		t.Errorf("scripts/check-deploy.sh builds %v, want every overlay: %v", listed, overlays)
	}
}

// TestComposeScalesEveryProcess: `docker compose up --scale S=N` works for
// the API, the relay and every consumer group's service: none has a fixed
// container_name or publishes a port of this machine (nginx, the edge,
// publishes the API's).
func TestComposeScalesEveryProcess(t *testing.T) {
	t.Parallel()
	project := loadCompose(t)
	want := map[string]bool{"api": true, "relay": true}
	for _, g := range handlers.Names() {
		want["consume "+g] = true
	}
	found := map[string]bool{}
	for name, s := range project.Services {
		command := strings.Join(s.Command, " ")
		if s.Image != "shop:dev" || !want[command] {
			continue
		}
		found[command] = true
		if s.ContainerName != "" {
			t.Errorf("service %s (%s) has container_name %q: --scale %s=2 would fail", name, command, s.ContainerName, name)
		}
		if len(s.Ports) > 0 {
			t.Errorf("service %s (%s) publishes %+v: a second replica could not bind the same host port", name, command, s.Ports)
		}
	}
	if !maps.Equal(found, want) {
		t.Errorf("scalable services found for %v, want %v", slices.Sorted(maps.Keys(found)), slices.Sorted(maps.Keys(want)))
	}
}

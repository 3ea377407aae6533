// Command reference-plugin is a measuring stick for the node agent: a kubelet
// DRA plugin built on the official kubeletplugin helper
// (k8s.io/dynamic-resource-allocation/kubeletplugin), the helper the reference
// DRA driver and the production drivers are built on.
//
// Per claim it does the node agent's work and nothing more: the helper
// fetches the claim, the plugin reads each allocated device's attributes from
// the (real or simulated) mock-accel sysfs tree, writes one transient CDI spec
// per claim with the node agent's content, and records the claim in a
// checkpoint written atomically. Unprepare removes both. The durability
// choices are the node agent's: the CDI spec is replaced atomically (temp
// file + rename, no fsync: it is transient and rebuilt from the checkpoint
// after a crash), the checkpoint is written to a temp file, fsynced, renamed
// and its directory fsynced.
//
// It publishes no ResourceSlices, marks no device allocated in sysfs and
// serves no health stream: it is not a product.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"
)

const (
	cdiKind        = "k8s.mock-accel.example.com/device"
	classDir       = "class/mock-accel"
	checkpointFile = "checkpoint.json"
)

type options struct {
	driver, kubeconfig, pluginDir, registryDir, cdiDir, sysfsRoot string
	deviceDir, cdiSysfsDir                                        string
	qps                                                           float64
	burst                                                         int
}

// The CDI document, field for field and in the order the node agent writes it.
type cdiNode struct {
	Path     string `json:"path"`
	HostPath string `json:"hostPath"`
}

type cdiMount struct {
	HostPath      string   `json:"hostPath"`
	ContainerPath string   `json:"containerPath"`
	Options       []string `json:"options"`
}

type cdiEdits struct {
	Env         []string   `json:"env"`
	DeviceNodes []cdiNode  `json:"deviceNodes"`
	Mounts      []cdiMount `json:"mounts"`
}

type cdiDevice struct {
	Name           string   `json:"name"`
	ContainerEdits cdiEdits `json:"containerEdits"`
}

type cdiSpec struct {
	CDIVersion string      `json:"cdiVersion"`
	Kind       string      `json:"kind"`
	Devices    []cdiDevice `json:"devices"`
}

type preparedDevice struct {
	Requests []string `json:"requests"`
	Pool     string   `json:"pool"`
	Device   string   `json:"device"`
	CDIIDs   []string `json:"cdiDeviceIDs"`
}

type preparedClaim struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	CDISpec   string           `json:"cdiSpec"`
	Devices   []preparedDevice `json:"devices"`
}

type checkpoint struct {
	Claims map[string]preparedClaim `json:"claims"`
}

type plugin struct {
	opts  options
	mu    sync.Mutex // the helper serialises calls already; this guards the map for HandleError's sake
	state checkpoint
}

func readAttr(dir, name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// deviceEdits reads one device from sysfs as the node agent's reader does and
// builds its CDI device (docs/abi.md §8.4).
func (p *plugin) deviceEdits(claimUID, name string) (cdiDevice, error) {
	entry := filepath.Join(p.opts.sysfsRoot, classDir, name)
	devDir, err := filepath.EvalSymlinks(entry)
	if err != nil {
		return cdiDevice{}, fmt.Errorf("device %s is not usable on this node: %w", name, err)
	}
	pciDir, err := filepath.EvalSymlinks(filepath.Join(devDir, "device"))
	if err != nil {
		return cdiDevice{}, fmt.Errorf("device %s: device link: %w", name, err)
	}
	attrs := map[string]string{}
	for _, a := range []string{"uuid", "memory_size"} {
		if attrs[a], err = readAttr(devDir, a); err != nil {
			return cdiDevice{}, fmt.Errorf("device %s: %w", name, err)
		}
	}
	numa, err := readAttr(pciDir, "numa_node")
	if err != nil {
		return cdiDevice{}, fmt.Errorf("device %s: %w", name, err)
	}
	if n, err := strconv.Atoi(numa); err != nil || n < 0 {
		numa = "-1"
	}
	kind, address, physfn := "pf", filepath.Base(pciDir), ""
	if strings.Contains(strings.TrimPrefix(name, "mock"), "v") {
		kind = "vf"
		if address, err = readAttr(devDir, "pci_address"); err != nil {
			return cdiDevice{}, fmt.Errorf("device %s: %w", name, err)
		}
		link, err := os.Readlink(filepath.Join(devDir, "physfn"))
		if err != nil {
			return cdiDevice{}, fmt.Errorf("device %s: physfn: %w", name, err)
		}
		physfn = filepath.Base(link)
	}
	prefix := "MOCK_ACCEL_" + strings.ToUpper(name) + "_"
	sysfsPath := strings.TrimRight(p.opts.cdiSysfsDir, "/") + "/" + name
	env := []string{
		prefix + "UUID=" + attrs["uuid"],
		prefix + "PCI_ADDRESS=" + address,
		prefix + "TYPE=" + kind,
		prefix + "MEMORY_SIZE=" + attrs["memory_size"],
		prefix + "NUMA_NODE=" + numa,
	}
	if physfn != "" {
		env = append(env, prefix+"PHYSFN="+physfn)
	}
	env = append(env, prefix+"SYSFS="+sysfsPath)
	return cdiDevice{
		Name: claimUID + "-" + name,
		ContainerEdits: cdiEdits{
			Env:         env,
			DeviceNodes: []cdiNode{{Path: "/dev/" + name, HostPath: strings.TrimRight(p.opts.deviceDir, "/") + "/" + name}},
			Mounts: []cdiMount{{
				HostPath: devDir, ContainerPath: sysfsPath,
				Options: []string{"ro", "nosuid", "nodev", "noexec", "bind"},
			}},
		},
	}, nil
}

func specFileName(claimUID string) string {
	return strings.ReplaceAll(strings.Replace(cdiKind, "/", "-", 1)+"_"+claimUID+".json", "/", "_")
}

// writeFile replaces path atomically; with durable, the data and the rename reach the disk first.
func writeFile(path string, data []byte, mode os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (p *plugin) saveCheckpoint() error {
	data, err := json.Marshal(p.state)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(p.opts.pluginDir, checkpointFile), data, 0o600, true)
}

func (p *plugin) prepareOne(claim *resourceapi.ResourceClaim) ([]kubeletplugin.Device, error) {
	uid := string(claim.UID)
	if done, ok := p.state.Claims[uid]; ok {
		return toResult(done), nil
	}
	spec := cdiSpec{CDIVersion: "0.5.0", Kind: cdiKind}
	record := preparedClaim{Namespace: claim.Namespace, Name: claim.Name, CDISpec: specFileName(uid)}
	for _, result := range claim.Status.Allocation.Devices.Results {
		if result.Driver != p.opts.driver {
			continue
		}
		device, err := p.deviceEdits(uid, result.Device)
		if err != nil {
			return nil, err
		}
		spec.Devices = append(spec.Devices, device)
		record.Devices = append(record.Devices, preparedDevice{
			Requests: []string{result.Request}, Pool: result.Pool, Device: result.Device,
			CDIIDs: []string{cdiKind + "=" + device.Name},
		})
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	specPath := filepath.Join(p.opts.cdiDir, record.CDISpec)
	if err := writeFile(specPath, append(data, '\n'), 0o644, false); err != nil {
		return nil, fmt.Errorf("write CDI spec: %w", err)
	}
	p.state.Claims[uid] = record
	if err := p.saveCheckpoint(); err != nil {
		delete(p.state.Claims, uid)
		_ = os.Remove(specPath)
		return nil, fmt.Errorf("write checkpoint: %w", err)
	}
	return toResult(record), nil
}

func toResult(c preparedClaim) []kubeletplugin.Device {
	out := make([]kubeletplugin.Device, 0, len(c.Devices))
	for _, d := range c.Devices {
		out = append(out, kubeletplugin.Device{Requests: d.Requests, PoolName: d.Pool, DeviceName: d.Device, CDIDeviceIDs: d.CDIIDs})
	}
	return out
}

func (p *plugin) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	result := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		devices, err := p.prepareOne(claim)
		result[claim.UID] = kubeletplugin.PrepareResult{Devices: devices, Err: err}
	}
	return result, nil
}

func (p *plugin) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	result := make(map[types.UID]error, len(claims))
	for _, claim := range claims {
		uid := string(claim.UID)
		record, ok := p.state.Claims[uid]
		if !ok {
			result[claim.UID] = nil
			continue
		}
		err := os.Remove(filepath.Join(p.opts.cdiDir, record.CDISpec))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			result[claim.UID] = fmt.Errorf("remove CDI spec: %w", err)
			continue
		}
		delete(p.state.Claims, uid)
		if err := p.saveCheckpoint(); err != nil {
			p.state.Claims[uid] = record
			result[claim.UID] = fmt.Errorf("write checkpoint: %w", err)
			continue
		}
		result[claim.UID] = nil
	}
	return result, nil
}

func (p *plugin) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, msg)
	if !errors.Is(err, kubeletplugin.ErrRecoverable) {
		os.Exit(1)
	}
}

func loadCheckpoint(dir string) (checkpoint, error) {
	state := checkpoint{Claims: map[string]preparedClaim{}}
	data, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return state, nil
	}
	if err != nil {
		return state, err
	}
	if err := json.Unmarshal(data, &state); err != nil {
		return state, fmt.Errorf("checkpoint: %w", err)
	}
	if state.Claims == nil {
		state.Claims = map[string]preparedClaim{}
	}
	return state, nil
}

func main() {
	var o options
	flag.StringVar(&o.driver, "driver-name", "mock-accel.example.com", "DRA driver name")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the API server the claims are read from")
	flag.StringVar(&o.pluginDir, "plugin-dir", "", "plugin data directory: DRA socket and checkpoint")
	flag.StringVar(&o.registryDir, "registry-dir", kubeletplugin.KubeletRegistryDir, "kubelet plugin registry directory")
	flag.StringVar(&o.cdiDir, "cdi-dir", "/var/run/cdi", "CDI spec directory")
	flag.StringVar(&o.sysfsRoot, "sysfs-root", "/sys", "sysfs root (a simulated tree in tests)")
	flag.StringVar(&o.deviceDir, "device-dir", "/dev", "host directory of the device nodes")
	flag.StringVar(&o.cdiSysfsDir, "cdi-sysfs-dir", "/sys/class/mock-accel", "container directory of the sysfs mounts")
	flag.Float64Var(&o.qps, "kube-api-qps", 1000, "client rate limit (client-go's default, 5, throttles prepare to ~200 ms)")
	flag.IntVar(&o.burst, "kube-api-burst", 1000, "client burst")
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "reference-plugin:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.pluginDir == "" {
		return errors.New("--plugin-dir is required")
	}
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig}, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	config.QPS, config.Burst = float32(o.qps), o.burst
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	for _, dir := range []string{o.pluginDir, o.registryDir, o.cdiDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	state, err := loadCheckpoint(o.pluginDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p := &plugin{opts: o, state: state}
	helper, err := kubeletplugin.Start(ctx, p,
		kubeletplugin.KubeClient(client),
		kubeletplugin.DriverName(o.driver),
		kubeletplugin.PluginDataDirectoryPath(o.pluginDir),
		kubeletplugin.RegistrarDirectoryPath(o.registryDir),
	)
	if err != nil {
		return err
	}
	klog.Info("reference plugin serving", "pluginDir", o.pluginDir)
	<-ctx.Done()
	helper.Stop()
	return nil
}

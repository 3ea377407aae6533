// Command kubelet-client plays kubelet against a DRA plugin over its Unix
// sockets, using the official k8s.io/kubelet generated stubs, and validates
// the CDI specs the plugin wrote with the official CDI library.
//
// It registers like kubelet's plugin watcher (GetInfo, then
// NotifyRegistrationStatus), then, for each requested API version (v1 and
// v1beta1 by default), prepares the claim given on the command line twice
// (the second call must give the same answer), loads every CDI device ID the
// plugin returned from the CDI directory through the CDI cache (which
// validates each spec file), unprepares the claim twice, and checks that the
// claim's CDI devices are gone. The result is printed as one JSON object; the
// exit status is 0 only if every check passed.
//
// With -bench PLAN it is kubelet's side of tools/bench/prepare_side_by_side
// instead (bench.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	drav1 "k8s.io/kubelet/pkg/apis/dra/v1"
	drav1beta1 "k8s.io/kubelet/pkg/apis/dra/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

type device struct {
	RequestNames []string `json:"requestNames"`
	PoolName     string   `json:"poolName"`
	DeviceName   string   `json:"deviceName"`
	CDIDeviceIDs []string `json:"cdiDeviceIDs"`
}

type prepared struct {
	Error   string   `json:"error"`
	Devices []device `json:"devices"`
}

type versionResult struct {
	Prepare          prepared          `json:"prepare"`
	PrepareAgainSame bool              `json:"prepareAgainSame"`
	CDISpecFiles     []string          `json:"cdiSpecFiles"`
	CDIDevices       map[string]bool   `json:"cdiDevicesResolved"`
	CDIErrors        map[string]string `json:"cdiErrors"`
	CDIVersions      []string          `json:"cdiVersions"`
	Unprepare        string            `json:"unprepareError"`
	UnprepareAgain   string            `json:"unprepareAgainError"`
	CDIGoneAfter     bool              `json:"cdiGoneAfterUnprepare"`
	Problems         []string          `json:"problems"`
}

type result struct {
	Info struct {
		Type              string   `json:"type"`
		Name              string   `json:"name"`
		Endpoint          string   `json:"endpoint"`
		SupportedVersions []string `json:"supportedVersions"`
	} `json:"info"`
	Notified bool                      `json:"notified"`
	Versions map[string]*versionResult `json:"versions"`
	Problems []string                  `json:"problems"`
	OK       bool                      `json:"ok"`
}

// claimAPI hides the two generated stub packages behind one shape.
type claimAPI interface {
	prepare(ctx context.Context) (prepared, error)
	unprepare(ctx context.Context) (string, error)
}

type claimRef struct{ namespace, uid, name string }

type v1API struct {
	client drav1.DRAPluginClient
	claim  claimRef
}

func (a v1API) prepare(ctx context.Context) (prepared, error) {
	resp, err := a.client.NodePrepareResources(ctx, &drav1.NodePrepareResourcesRequest{
		Claims: []*drav1.Claim{{Namespace: a.claim.namespace, Uid: a.claim.uid, Name: a.claim.name}},
	})
	if err != nil {
		return prepared{}, err
	}
	entry, ok := resp.Claims[a.claim.uid]
	if !ok {
		return prepared{}, fmt.Errorf("response has no entry for claim %s", a.claim.uid)
	}
	out := prepared{Error: entry.Error}
	for _, d := range entry.Devices {
		out.Devices = append(out.Devices, device{d.RequestNames, d.PoolName, d.DeviceName, d.CdiDeviceIds})
	}
	return out, nil
}

func (a v1API) unprepare(ctx context.Context) (string, error) {
	resp, err := a.client.NodeUnprepareResources(ctx, &drav1.NodeUnprepareResourcesRequest{
		Claims: []*drav1.Claim{{Namespace: a.claim.namespace, Uid: a.claim.uid, Name: a.claim.name}},
	})
	if err != nil {
		return "", err
	}
	entry, ok := resp.Claims[a.claim.uid]
	if !ok {
		return "", fmt.Errorf("response has no entry for claim %s", a.claim.uid)
	}
	return entry.Error, nil
}

type v1beta1API struct {
	client drav1beta1.DRAPluginClient
	claim  claimRef
}

func (a v1beta1API) prepare(ctx context.Context) (prepared, error) {
	resp, err := a.client.NodePrepareResources(ctx, &drav1beta1.NodePrepareResourcesRequest{
		Claims: []*drav1beta1.Claim{{Namespace: a.claim.namespace, Uid: a.claim.uid, Name: a.claim.name}},
	})
	if err != nil {
		return prepared{}, err
	}
	entry, ok := resp.Claims[a.claim.uid]
	if !ok {
		return prepared{}, fmt.Errorf("response has no entry for claim %s", a.claim.uid)
	}
	out := prepared{Error: entry.Error}
	for _, d := range entry.Devices {
		out.Devices = append(out.Devices, device{d.RequestNames, d.PoolName, d.DeviceName, d.CdiDeviceIds})
	}
	return out, nil
}

func (a v1beta1API) unprepare(ctx context.Context) (string, error) {
	resp, err := a.client.NodeUnprepareResources(ctx, &drav1beta1.NodeUnprepareResourcesRequest{
		Claims: []*drav1beta1.Claim{{Namespace: a.claim.namespace, Uid: a.claim.uid, Name: a.claim.name}},
	})
	if err != nil {
		return "", err
	}
	entry, ok := resp.Claims[a.claim.uid]
	if !ok {
		return "", fmt.Errorf("response has no entry for claim %s", a.claim.uid)
	}
	return entry.Error, nil
}

func dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// checkCDI loads the CDI directory through the official cache (which parses
// and validates every spec) and resolves each ID.
func checkCDI(dir string, ids []string, vr *versionResult) {
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		vr.Problems = append(vr.Problems, "cdi cache: "+err.Error())
	}
	for path, errs := range cache.GetErrors() {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		vr.CDIErrors[path] = strings.Join(msgs, "; ")
		vr.Problems = append(vr.Problems, "invalid CDI spec "+path)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		vr.CDISpecFiles = append(vr.CDISpecFiles, filepath.Base(f))
		spec, err := cdi.ReadSpec(f, 0)
		if err != nil {
			vr.Problems = append(vr.Problems, "ReadSpec "+f+": "+err.Error())
			continue
		}
		vr.CDIVersions = append(vr.CDIVersions, spec.Version)
	}
	for _, id := range ids {
		found := cache.GetDevice(id) != nil
		vr.CDIDevices[id] = found
		if !found {
			vr.Problems = append(vr.Problems, "CDI device not resolvable: "+id)
		}
	}
}

func cdiGone(dir string, ids []string) bool {
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil && cache == nil {
		return false
	}
	for _, id := range ids {
		if cache.GetDevice(id) != nil {
			return false
		}
	}
	return true
}

func run(ctx context.Context, api claimAPI, cdiDir string) *versionResult {
	vr := &versionResult{CDIDevices: map[string]bool{}, CDIErrors: map[string]string{}}
	first, err := api.prepare(ctx)
	if err != nil {
		vr.Problems = append(vr.Problems, "NodePrepareResources: "+err.Error())
		return vr
	}
	vr.Prepare = first
	if first.Error != "" {
		vr.Problems = append(vr.Problems, "claim error: "+first.Error)
	}
	again, err := api.prepare(ctx)
	if err != nil {
		vr.Problems = append(vr.Problems, "NodePrepareResources again: "+err.Error())
	}
	vr.PrepareAgainSame = err == nil && reflect.DeepEqual(first, again)
	if !vr.PrepareAgainSame {
		vr.Problems = append(vr.Problems, "second NodePrepareResources differs")
	}
	var ids []string
	for _, d := range first.Devices {
		ids = append(ids, d.CDIDeviceIDs...)
	}
	checkCDI(cdiDir, ids, vr)
	if vr.Unprepare, err = api.unprepare(ctx); err != nil {
		vr.Problems = append(vr.Problems, "NodeUnprepareResources: "+err.Error())
	}
	if vr.UnprepareAgain, err = api.unprepare(ctx); err != nil {
		vr.Problems = append(vr.Problems, "NodeUnprepareResources again: "+err.Error())
	}
	if vr.Unprepare != "" || vr.UnprepareAgain != "" {
		vr.Problems = append(vr.Problems, "unprepare reported an error")
	}
	vr.CDIGoneAfter = cdiGone(cdiDir, ids)
	if !vr.CDIGoneAfter {
		vr.Problems = append(vr.Problems, "CDI devices still resolvable after unprepare")
	}
	return vr
}

func main() {
	regSocket := flag.String("registration-socket", "", "path of the plugin's registration socket")
	driver := flag.String("driver", "mock-accel.example.com", "expected driver name")
	namespace := flag.String("claim-namespace", "", "ResourceClaim namespace")
	uid := flag.String("claim-uid", "", "ResourceClaim UID")
	name := flag.String("claim-name", "", "ResourceClaim name")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "CDI spec directory the plugin writes to")
	versions := flag.String("versions", "v1,v1beta1", "DRAPlugin API versions to exercise, in order")
	timeout := flag.Duration("timeout", 45*time.Second, "per-call timeout (kubelet's default is 45s)")
	bench := flag.String("bench", "", "benchmark mode: a JSON plan of claim groups; prints per-call seconds as JSON")
	flag.Parse()
	if *bench != "" {
		os.Exit(runBench(*regSocket, *bench, *timeout))
	}

	res := result{Versions: map[string]*versionResult{}}
	fail := func(msg string) { res.Problems = append(res.Problems, msg) }
	defer func() {
		res.OK = len(res.Problems) == 0
		for _, vr := range res.Versions {
			res.OK = res.OK && len(vr.Problems) == 0
		}
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(out))
		if !res.OK {
			os.Exit(1)
		}
	}()

	if *regSocket == "" || *uid == "" {
		fail("--registration-socket and --claim-uid are required")
		return
	}
	ctx := context.Background()
	regConn, err := dial(*regSocket)
	if err != nil {
		fail("dial registration socket: " + err.Error())
		return
	}
	defer regConn.Close()
	reg := registerapi.NewRegistrationClient(regConn)
	callCtx, cancel := context.WithTimeout(ctx, *timeout)
	info, err := reg.GetInfo(callCtx, &registerapi.InfoRequest{})
	cancel()
	if err != nil {
		fail("GetInfo: " + err.Error())
		return
	}
	res.Info.Type, res.Info.Name = info.Type, info.Name
	res.Info.Endpoint, res.Info.SupportedVersions = info.Endpoint, info.SupportedVersions
	// The checks of kubelet's plugin watcher and DRA registration handler.
	if info.Type != registerapi.DRAPlugin {
		fail("type is " + info.Type)
	}
	if info.Name != *driver {
		fail("name is " + info.Name)
	}
	if !filepath.IsAbs(info.Endpoint) {
		fail("endpoint is not absolute: " + info.Endpoint)
	}
	if len(info.SupportedVersions) == 0 || info.SupportedVersions[0] != "v1.DRAPlugin" {
		fail("v1.DRAPlugin must be listed first")
	}
	if !slices.Contains(info.SupportedVersions, "v1beta1.DRAPlugin") {
		fail("v1beta1.DRAPlugin is not listed")
	}
	callCtx, cancel = context.WithTimeout(ctx, *timeout)
	_, err = reg.NotifyRegistrationStatus(callCtx, &registerapi.RegistrationStatus{PluginRegistered: true})
	cancel()
	res.Notified = err == nil
	if err != nil {
		fail("NotifyRegistrationStatus: " + err.Error())
	}

	draConn, err := dial(info.Endpoint)
	if err != nil {
		fail("dial DRA socket: " + err.Error())
		return
	}
	defer draConn.Close()
	claim := claimRef{*namespace, *uid, *name}
	for _, version := range strings.Split(*versions, ",") {
		var api claimAPI
		switch version {
		case "v1":
			api = v1API{drav1.NewDRAPluginClient(draConn), claim}
		case "v1beta1":
			api = v1beta1API{drav1beta1.NewDRAPluginClient(draConn), claim}
		default:
			fail("unknown version " + version)
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, *timeout)
		res.Versions[version] = run(callCtx, api, *cdiDir)
		cancel()
	}
}

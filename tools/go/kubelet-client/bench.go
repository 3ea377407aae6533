package main

// The benchmark mode (-bench FILE): kubelet's side of tools/bench/prepare_side_by_side.
// The same client drives every plugin, so the figures differ only by the plugin.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	drav1 "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type benchClaim struct {
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Name      string `json:"name"`
}

type benchGroup struct {
	Label  string       `json:"label"`
	Claims []benchClaim `json:"claims"`
}

type benchPlan struct {
	Sequential int          `json:"sequential"`
	Concurrent int          `json:"concurrent"`
	Rounds     int          `json:"rounds"`
	Groups     []benchGroup `json:"groups"`
	// Floor: sequential NodeUnprepareResources calls, each for a claim the plugin
	// never prepared, so it only looks the claim up and answers: the cost of a
	// call itself (transport, framework, lookup), with no work behind it.
	Floor int `json:"floor"`
}

// Seconds per call, by group label and phase.
type benchResult struct {
	Driver  string                          `json:"driver"`
	Samples map[string]map[string][]float64 `json:"samples"`
	Errors  []string                        `json:"errors"`
}

func toClaims(cs []benchClaim) []*drav1.Claim {
	out := make([]*drav1.Claim, 0, len(cs))
	for _, c := range cs {
		out = append(out, &drav1.Claim{Namespace: c.Namespace, Uid: c.UID, Name: c.Name})
	}
	return out
}

type benchRunner struct {
	client  drav1.DRAPluginClient
	timeout time.Duration
	mu      sync.Mutex
	errors  []string
}

func (b *benchRunner) fail(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) < 20 {
		b.errors = append(b.errors, fmt.Sprintf(format, args...))
	}
}

// prepare calls NodePrepareResources for the claims and returns the seconds it took.
func (b *benchRunner) prepare(claims []benchClaim) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	started := time.Now()
	resp, err := b.client.NodePrepareResources(ctx, &drav1.NodePrepareResourcesRequest{Claims: toClaims(claims)})
	elapsed := time.Since(started).Seconds()
	if err != nil {
		b.fail("NodePrepareResources: %v", err)
		return elapsed
	}
	for _, c := range claims {
		entry, ok := resp.Claims[c.UID]
		switch {
		case !ok:
			b.fail("prepare %s: no entry", c.Name)
		case entry.Error != "":
			b.fail("prepare %s: %s", c.Name, entry.Error)
		case len(entry.Devices) == 0:
			b.fail("prepare %s: no devices", c.Name)
		}
	}
	return elapsed
}

func (b *benchRunner) unprepare(claims []benchClaim) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	started := time.Now()
	resp, err := b.client.NodeUnprepareResources(ctx, &drav1.NodeUnprepareResourcesRequest{Claims: toClaims(claims)})
	elapsed := time.Since(started).Seconds()
	if err != nil {
		b.fail("NodeUnprepareResources: %v", err)
		return elapsed
	}
	for _, c := range claims {
		if entry, ok := resp.Claims[c.UID]; !ok || entry.Error != "" {
			b.fail("unprepare %s: %v", c.Name, entry)
		}
	}
	return elapsed
}

// concurrently makes one call per claim at once (kubelet prepares each pod's claims in its own call).
func (b *benchRunner) concurrently(claims []benchClaim, call func([]benchClaim) float64) []float64 {
	out := make([]float64, len(claims))
	var wg sync.WaitGroup
	for i := range claims {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out[i] = call(claims[i : i+1])
		}(i)
	}
	wg.Wait()
	return out
}

func runBench(regSocket, planFile string, timeout time.Duration) int {
	raw, err := os.ReadFile(planFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read plan:", err)
		return 2
	}
	var plan benchPlan
	if err := json.Unmarshal(raw, &plan); err != nil {
		fmt.Fprintln(os.Stderr, "parse plan:", err)
		return 2
	}
	regConn, err := dial(regSocket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial registration socket:", err)
		return 1
	}
	defer regConn.Close()
	reg := registerapi.NewRegistrationClient(regConn)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	info, err := reg.GetInfo(ctx, &registerapi.InfoRequest{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "GetInfo:", err)
		return 1
	}
	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	_, err = reg.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "NotifyRegistrationStatus:", err)
		return 1
	}
	draConn, err := dial(info.Endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial DRA socket:", err)
		return 1
	}
	defer draConn.Close()
	b := &benchRunner{client: drav1.NewDRAPluginClient(draConn), timeout: timeout}
	res := benchResult{Driver: info.Name, Samples: map[string]map[string][]float64{}}
	for _, group := range plan.Groups {
		if len(group.Claims) == 0 {
			continue
		}
		s := map[string][]float64{}
		for i := 0; i < plan.Sequential; i++ {
			claim := group.Claims[i%len(group.Claims) : i%len(group.Claims)+1]
			s["prepare_sequential"] = append(s["prepare_sequential"], b.prepare(claim))
			s["unprepare_sequential"] = append(s["unprepare_sequential"], b.unprepare(claim))
		}
		batch := group.Claims[:min(plan.Concurrent, len(group.Claims))]
		for r := 0; r < plan.Rounds; r++ {
			s["prepare_concurrent"] = append(s["prepare_concurrent"], b.concurrently(batch, b.prepare)...)
			s["unprepare_concurrent"] = append(s["unprepare_concurrent"], b.concurrently(batch, b.unprepare)...)
		}
		res.Samples[group.Label] = s
	}
	if plan.Floor > 0 {
		s := map[string][]float64{}
		for i := 0; i < plan.Floor; i++ {
			claim := []benchClaim{{Namespace: "floor", UID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Name: fmt.Sprintf("floor-%d", i)}}
			s["unprepare_unknown"] = append(s["unprepare_unknown"], b.unprepare(claim))
		}
		res.Samples["floor"] = s
	}
	res.Errors = b.errors
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if len(res.Errors) > 0 {
		return 1
	}
	return 0
}

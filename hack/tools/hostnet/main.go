// hostnet is the local test stack's mutating admission webhook: it gives every new pod host
// networking, because the stack has no pod network (see hack/stack/README.md). It lets the pods
// that Velero creates itself (its server from the helm chart's Deployment, node-agent, repository
// maintenance Jobs, Velero's data mover pods) run unmodified.
//
//	usage: hostnet -listen 127.0.0.1:9443 -cert FILE -key FILE
//
// For a pod without hostNetwork it sets spec.hostNetwork, removes the containers' `ports` (on the
// host network a declared port is a host port: two pods declaring 8085, such as Velero's server
// and node-agent, could never share the one node) and turns probe ports given by name into the
// numbers they named, so the probes keep working. Pods that already use the host network pass
// unchanged. This is a property of the test stack, not of snapmove.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
)

type review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *request  `json:"request,omitempty"`
	Response   *response `json:"response,omitempty"`
}

type request struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Object    pod    `json:"object"`
}

type response struct {
	UID       string `json:"uid"`
	Allowed   bool   `json:"allowed"`
	PatchType string `json:"patchType,omitempty"`
	Patch     []byte `json:"patch,omitempty"`
}

type pod struct {
	Metadata struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
	} `json:"metadata"`
	Spec struct {
		HostNetwork    bool        `json:"hostNetwork"`
		Containers     []container `json:"containers"`
		InitContainers []container `json:"initContainers"`
	} `json:"spec"`
}

type container struct {
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	LivenessProbe  *probe `json:"livenessProbe"`
	ReadinessProbe *probe `json:"readinessProbe"`
	StartupProbe   *probe `json:"startupProbe"`
}

type probe struct {
	HTTPGet   *struct{ Port json.RawMessage } `json:"httpGet"`
	TCPSocket *struct{ Port json.RawMessage } `json:"tcpSocket"`
	GRPC      json.RawMessage                 `json:"grpc"`
}

type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// patch is the JSON patch that puts p on the host network; nil when it is there already.
func patch(p pod) []op {
	if p.Spec.HostNetwork {
		return nil
	}
	ops := []op{{Op: "add", Path: "/spec/hostNetwork", Value: true}}
	for field, cs := range map[string][]container{"containers": p.Spec.Containers, "initContainers": p.Spec.InitContainers} {
		for i, c := range cs {
			base := fmt.Sprintf("/spec/%s/%d", field, i)
			named := map[string]int{}
			for _, port := range c.Ports {
				if port.Name != "" {
					named[port.Name] = port.ContainerPort
				}
			}
			if c.Ports != nil {
				ops = append(ops, op{Op: "remove", Path: base + "/ports"})
			}
			for kind, pr := range map[string]*probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if pr == nil {
					continue
				}
				if pr.HTTPGet != nil {
					ops = append(ops, numberPort(named, base+"/"+kind+"/httpGet/port", pr.HTTPGet.Port)...)
				}
				if pr.TCPSocket != nil {
					ops = append(ops, numberPort(named, base+"/"+kind+"/tcpSocket/port", pr.TCPSocket.Port)...)
				}
			}
		}
	}
	return ops
}

// numberPort replaces a probe port given by name with the number of the container port it names.
func numberPort(named map[string]int, path string, raw json.RawMessage) []op {
	var name string
	if json.Unmarshal(raw, &name) != nil {
		return nil // a number already
	}
	if n, err := strconv.Atoi(name); err == nil {
		return []op{{Op: "replace", Path: path, Value: n}}
	}
	if n, ok := named[name]; ok {
		return []op{{Op: "replace", Path: path, Value: n}}
	}
	return nil
}

func serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var in review
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil || in.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	out := review{APIVersion: in.APIVersion, Kind: in.Kind, Response: &response{UID: in.Request.UID, Allowed: true}}
	if ops := patch(in.Request.Object); ops != nil {
		out.Response.PatchType = "JSONPatch"
		out.Response.Patch, _ = json.Marshal(ops)
		name := in.Request.Object.Metadata.Name
		if name == "" {
			name = in.Request.Object.Metadata.GenerateName + "*"
		}
		log.Printf("pod %s/%s: host network (%d patch operations)", in.Request.Namespace, name, len(ops))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "address to serve HTTPS on")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	flag.Parse()
	if *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: hostnet -listen ADDR -cert FILE -key FILE")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", serve)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	log.Printf("serving on https://%s/mutate", *listen)
	log.Fatal(http.ListenAndServeTLS(*listen, *cert, *key, mux))
}

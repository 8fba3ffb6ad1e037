package driver

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// RegistrationServer answers the kubelet's plugin watcher on a socket in
// <kubelet root>/plugins_registry/, telling it where the CSI socket is. It stands in for
// node-driver-registrar, which is not available to this project.
type RegistrationServer struct {
	registerapi.UnimplementedRegistrationServer

	name, csiSocketPath string
	log                 *slog.Logger
}

// NewRegistrationServer returns a registration server for the driver name whose CSI
// service listens on csiSocketPath (a plain path, as the kubelet dials it).
func NewRegistrationServer(name, csiSocketPath string, log *slog.Logger) *RegistrationServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RegistrationServer{name: name, csiSocketPath: csiSocketPath, log: log}
}

// Register adds the registration service to srv.
func (r *RegistrationServer) Register(srv *grpc.Server) {
	registerapi.RegisterRegistrationServer(srv, r)
}

// GetInfo describes the plugin to the kubelet.
func (r *RegistrationServer) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.csiSocketPath,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus logs the kubelet's verdict.
func (r *RegistrationServer) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		r.log.Info("kubelet registered the plugin", "driver", r.name)
	} else {
		r.log.Error("kubelet rejected the plugin registration", "driver", r.name, "error", st.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

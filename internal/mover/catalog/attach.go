package catalog

import (
	"context"
	"io"

	"github.com/pkg/errors"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// Attach streams stdin into container of pod, a container started with its stdin open
// once (Stdin and StdinOnce), and returns when the session ends: the container has read
// stdin to its end and exited, or the session broke. It blocks.
type Attach func(ctx context.Context, pod types.NamespacedName, container string, stdin io.Reader) error

// APIAttach attaches through the API server (pods/attach), as `kubectl attach` does:
// WebSocket, or SPDY where the server does not upgrade to it. What the container writes
// is discarded (its outcome is its termination message).
func APIAttach(cfg *rest.Config) (Attach, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, errors.Wrap(err, "creating the API client for pods/attach")
	}
	return func(ctx context.Context, pod types.NamespacedName, container string, stdin io.Reader) error {
		req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("attach").
			VersionedParams(&corev1.PodAttachOptions{Container: container, Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
		if err != nil {
			return errors.Wrap(err, "attaching over WebSocket")
		}
		spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
		if err != nil {
			return errors.Wrap(err, "attaching over SPDY")
		}
		exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
		if err != nil {
			return errors.Wrap(err, "attaching")
		}
		err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: io.Discard, Stderr: io.Discard})
		return errors.Wrapf(err, "attaching to pod %s", pod)
	}, nil
}

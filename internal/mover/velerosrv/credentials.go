package velerosrv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The values of --default-credentials-secret besides NAME/KEY.
const (
	// Auto: the secret Velero's Deployment mounts (Discover), as Velero's server finds it.
	Auto = "auto"
	// None: no secret; ambient credentials (workload identity, instance roles).
	None = "none"
)

// Default is --default-credentials-secret: the credentials of BackupStorageLocations
// without spec.credential. The zero value is None.
type Default struct {
	// Auto: Velero's Deployment's, discovered.
	Auto bool
	// Secret, when set, is the secret key the flag names (NAME/KEY).
	Secret *corev1.SecretKeySelector
}

// ParseDefault reads "auto", "none" (or "": none), NAME/KEY, or NAME (key "cloud").
func ParseDefault(v string) (Default, error) {
	switch v {
	case Auto:
		return Default{Auto: true}, nil
	case None, "":
		return Default{}, nil
	}
	name, key, found := strings.Cut(v, "/")
	if !found {
		key = "cloud"
	}
	if name == "" || key == "" || strings.Contains(key, "/") {
		return Default{}, errors.Errorf("--default-credentials-secret %q: want auto, none or NAME/KEY", v)
	}
	return Default{Secret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}, nil
}

// FlagValue renders sel for --default-credentials-secret: NAME/KEY, or none for nil.
func FlagValue(sel *corev1.SecretKeySelector) string {
	if sel == nil {
		return None
	}
	return sel.Name + "/" + sel.Key
}

// String is d as the flag takes it.
func (d Default) String() string {
	if d.Auto {
		return Auto
	}
	return FlagValue(d.Secret)
}

// Credentials resolves Default for a BackupStorageLocation. It implements connect's
// Credentials.
type Credentials struct {
	Default Default
	// Server returns Velero's server (Cache.Get, or Discover); needed only with
	// Default.Auto.
	Server func(ctx context.Context) (Server, error)
}

// DefaultFor returns the secret key of bsl's credentials when bsl names none: the flag's
// secret, nil with none, or with auto what Velero's Deployment mounts for bsl's provider
// (nil when it mounts none: ambient credentials). A bsl with spec.credential needs no
// default: nil, and nothing is discovered. Discovery errors are returned as Discover
// returns them (an API error stays one, so a caller may classify it).
func (c Credentials) DefaultFor(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, error) {
	if bsl.Spec.Credential != nil {
		return nil, nil
	}
	sel, _, err := c.resolve(ctx, bsl)
	return sel, err
}

// Describe says which credentials bsl is opened with, for the user's commands: its
// spec.credential, the flag's secret, the one Velero's Deployment mounts, or none.
func (c Credentials) Describe(ctx context.Context, bsl *velerov1.BackupStorageLocation) (string, error) {
	if cr := bsl.Spec.Credential; cr != nil {
		return fmt.Sprintf("secret %s/%s key %s, from the BackupStorageLocation's spec.credential", bsl.Namespace, cr.Name, cr.Key), nil
	}
	_, how, err := c.resolve(ctx, bsl)
	return how, err
}

func (c Credentials) resolve(ctx context.Context, bsl *velerov1.BackupStorageLocation) (*corev1.SecretKeySelector, string, error) {
	switch {
	case c.Default.Secret != nil:
		s := *c.Default.Secret
		return &s, fmt.Sprintf("secret %s/%s key %s (--default-credentials-secret)", bsl.Namespace, s.Name, s.Key), nil
	case !c.Default.Auto:
		return nil, "none: ambient credentials (--default-credentials-secret none)", nil
	case c.Server == nil:
		return nil, "", errors.New("--default-credentials-secret auto: nothing reads Velero's Deployment here; name the secret NAME/KEY (or none)")
	}
	srv, err := c.Server(ctx)
	if err != nil {
		return nil, "", err
	}
	sel, err := srv.CredentialsFor(bsl.Spec.Provider)
	if err != nil || sel == nil {
		return sel, fmt.Sprintf("none: ambient credentials (Velero's Deployment %s mounts no credentials secret)", srv.Deployment), err
	}
	return sel, srv.Describe(sel), nil
}

// DefaultTTL is how long Cache keeps a discovery: a change to Velero's Deployment or
// ServiceAccount reaches the next worker within seconds, for two reads of the API at most
// that often.
const DefaultTTL = 10 * time.Second

// Cache discovers Velero's server when first asked (it may appear after the mover
// starts), and again once TTL has passed since; a failed discovery is returned and never
// kept. It is safe for concurrent use; the zero value is not usable (Reader and Namespace).
type Cache struct {
	Reader    client.Reader
	Namespace string
	// TTL defaults to DefaultTTL; Clock to the real clock.
	TTL   time.Duration
	Clock clock.PassiveClock

	mu     sync.Mutex
	server *Server
	at     time.Time
}

// Get returns Velero's server, discovering it when the cached one is older than TTL. It
// blocks for one discovery at most (concurrent callers wait for it).
func (c *Cache) Get(ctx context.Context) (Server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clk, ttl := c.Clock, c.TTL
	if clk == nil {
		clk = clock.RealClock{}
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := clk.Now()
	if c.server != nil && now.Sub(c.at) < ttl {
		return *c.server, nil
	}
	s, err := Discover(ctx, c.Reader, c.Namespace)
	if err != nil {
		c.server = nil
		return Server{}, err
	}
	c.server, c.at = &s, now
	return s, nil
}

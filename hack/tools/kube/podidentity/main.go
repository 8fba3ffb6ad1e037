// podidentity is the local test stack's EKS pod identity webhook: the mutating admission
// webhook of EKS IAM roles for service accounts (IRSA), amazon-eks-pod-identity-webhook,
// served on a loopback address. Its own main listens on every interface (":PORT"); this
// one wires the same packages as that main (pkg/cache, pkg/handler, pkg/containercredentials
// of the pinned version) with its defaults, and listens where the stack's servers must.
//
//	usage: podidentity -listen 127.0.0.1:9444 -cert FILE -key FILE -kubeconfig FILE [-token-audience A]
//
// A pod whose ServiceAccount has the annotation eks.amazonaws.com/role-arn gets, as on
// EKS, a projected service account token of audience sts.amazonaws.com at
// /var/run/secrets/eks.amazonaws.com/serviceaccount/token and AWS_ROLE_ARN and
// AWS_WEB_IDENTITY_TOKEN_FILE in each container. As upstream by default
// (-service-account-lookup-grace-period 0), an account its informer cache has not seen yet
// leaves the pod unmutated. This is a property of the test stack, not of snapmove.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/amazon-eks-pod-identity-webhook/pkg"
	"github.com/aws/amazon-eks-pod-identity-webhook/pkg/cache"
	"github.com/aws/amazon-eks-pod-identity-webhook/pkg/containercredentials"
	"github.com/aws/amazon-eks-pod-identity-webhook/pkg/handler"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9444", "address to serve the webhook on (TLS)")
	certFile := flag.String("cert", "", "TLS certificate")
	keyFile := flag.String("key", "", "TLS key")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	audience := flag.String("token-audience", "sts.amazonaws.com", "default audience of the projected token (upstream's default)")
	grace := flag.Duration("service-account-lookup-grace-period", 0, "upstream's flag: how long to wait for an account the cache has not seen")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *listen, *certFile, *keyFile, *kubeconfig, *audience, *grace); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen, certFile, keyFile, kubeconfig, audience string, grace time.Duration) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("loading the serving certificate: %w", err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", kubeconfig, err)
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(clientset, 60*time.Second)
	saInformer := factory.Core().V1().ServiceAccounts()
	// Upstream main's defaults: annotation prefix eks.amazonaws.com, no regional STS, the
	// default token expiration, no ConfigMap, no role ARN composition.
	saCache := cache.New(audience, "eks.amazonaws.com", false, pkg.DefaultTokenExpiration, saInformer, nil,
		cache.ComposeRoleArn{}, clientset.CoreV1())
	done := make(chan struct{})
	defer close(done)
	factory.Start(done)
	saCache.Start(done)

	mod := handler.NewModifier(rand.New(rand.NewSource(time.Now().UnixNano())),
		handler.WithAnnotationDomain("eks.amazonaws.com"),
		handler.WithMountPath("/var/run/secrets/eks.amazonaws.com/serviceaccount"),
		handler.WithServiceAccountCache(saCache),
		handler.WithContainerCredentialsConfig(containercredentials.NewFileConfig("pods.eks.amazonaws.com",
			"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", "eks-pod-identity-token", "eks-pod-identity-token",
			"http://169.254.170.23/v1/credentials")),
		handler.WithSALookupGraceTime(grace),
	)
	mux := http.NewServeMux()
	mux.Handle("/mutate", handler.Apply(http.HandlerFunc(mod.Handle), handler.InstrumentRoute(), handler.Logging()))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	server := &http.Server{
		Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("serving on %s", listen)
	if err := server.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

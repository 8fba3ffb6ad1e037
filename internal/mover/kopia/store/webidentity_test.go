package store

import (
	"context"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestWebIdentityFromEnv(t *testing.T) {
	irsa := map[string]string{envWebIdentityTokenFile: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token", envRoleARN: "arn:aws:iam::1:role/velero"}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range irsa {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	s3loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "b", Endpoint: "minio.velero.svc:9000", CACert: []byte("PEM")}
	tests := []struct {
		name        string
		loc         repository.Location
		env         map[string]string
		want        bool
		endpoint    string
		sessionName string
		withCA      bool
	}{
		{name: "regional default", loc: s3loc, env: with(map[string]string{envRegion: "eu-west-1"}), want: true, endpoint: "https://sts.eu-west-1.amazonaws.com", sessionName: "snapmove-worker-0"},
		{name: "china region", loc: s3loc, env: with(map[string]string{envRegion: "cn-north-1"}), want: true, endpoint: "https://sts.cn-north-1.amazonaws.com.cn", sessionName: "snapmove-worker-0"},
		{name: "no region", loc: s3loc, env: with(nil), want: true, endpoint: "https://sts.amazonaws.com", sessionName: "snapmove-worker-0"},
		{name: "AWS_DEFAULT_REGION is not minio's", loc: s3loc, env: with(map[string]string{"AWS_DEFAULT_REGION": "eu-west-1"}), want: true, endpoint: "https://sts.amazonaws.com", sessionName: "snapmove-worker-0"},
		{name: "AWS_ENDPOINT_URL", loc: s3loc, env: with(map[string]string{envRegion: "eu-west-1", envEndpointURL: "http://all.example:8080"}), want: true, endpoint: "http://all.example:8080", sessionName: "snapmove-worker-0"},
		{name: "AWS_ENDPOINT_URL_STS wins", loc: s3loc, env: with(map[string]string{envEndpointURL: "http://all.example", envEndpointURLSTS: "https://sts.example"}), want: true, endpoint: "https://sts.example", sessionName: "snapmove-worker-0"},
		{name: "endpoint without scheme", loc: s3loc, env: with(map[string]string{envEndpointURLSTS: "sts.example"}), want: true, endpoint: "https://sts.example", sessionName: "snapmove-worker-0"},
		{name: "STS on the store's host trusts its CA", loc: s3loc, env: with(map[string]string{envEndpointURLSTS: "https://minio.velero.svc:9000", envRoleSessionName: "mine"}), want: true, endpoint: "https://minio.velero.svc:9000", sessionName: "mine", withCA: true},
		{name: "static keys win", loc: repository.Location{Provider: repository.ProviderAWS, AccessKeyID: "AK"}, env: with(nil)},
		{name: "no token file", loc: s3loc, env: map[string]string{envRoleARN: "arn:aws:iam::1:role/velero"}},
		{name: "no role", loc: s3loc, env: map[string]string{envWebIdentityTokenFile: "/t"}},
		{name: "no environment", loc: s3loc, env: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wi, ok := webIdentityFromEnv(tt.loc, envOf(tt.env), "worker-0")
			require.Equal(t, tt.want, ok)
			if !tt.want {
				return
			}
			require.Equal(t, tt.endpoint, wi.STSEndpoint)
			require.Equal(t, tt.env[envRoleARN], wi.RoleARN)
			require.Equal(t, tt.env[envWebIdentityTokenFile], wi.TokenFile)
			require.Equal(t, tt.sessionName, wi.SessionName)
			if tt.withCA {
				require.Equal(t, tt.loc.CACert, wi.STSRootCA)
			} else {
				require.Empty(t, wi.STSRootCA)
			}
		})
	}
}

func TestDefaultSessionName(t *testing.T) {
	require.Equal(t, "snapmove-a_b-c.d", defaultSessionName("a_b/c.d"))
	long := defaultSessionName(string(make([]byte, 100)))
	require.Len(t, long, 64)
}

func TestRefreshMargin(t *testing.T) {
	for _, tt := range []struct{ lifetime, want time.Duration }{
		{time.Hour, 12 * time.Minute},
		{15 * time.Minute, 5 * time.Minute},
		{4 * time.Minute, 2 * time.Minute},
	} {
		require.Equal(t, tt.want, refreshMargin(tt.lifetime), tt.lifetime)
	}
}

// fakeStorage is a blob.Storage that records which one served a call.
type fakeStorage struct {
	blob.Storage // unused methods panic
	id           int
	closed       bool
}

func (f *fakeStorage) GetMetadata(context.Context, blob.ID) (blob.Metadata, error) {
	return blob.Metadata{BlobID: blob.ID(fmt.Sprint(f.id))}, nil
}
func (f *fakeStorage) Close(context.Context) error { f.closed = true; return nil }

func TestRefreshingStorage(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	errSTS := stderrors.New("sts down")
	tests := []struct {
		name      string
		lifetime  time.Duration // zero: credentials that do not expire
		at        time.Duration // of the call after open
		failAgain bool          // the refresh fails
		wantID    int           // storage that serves the call (0 at open)
		wantErr   bool
	}{
		{name: "fresh", lifetime: time.Hour, at: 30 * time.Minute, wantID: 0},
		{name: "just before the margin", lifetime: time.Hour, at: 48*time.Minute - time.Second, wantID: 0},
		{name: "within the margin", lifetime: time.Hour, at: 48 * time.Minute, wantID: 1},
		{name: "expired", lifetime: time.Hour, at: 2 * time.Hour, wantID: 1},
		{name: "never expires", at: 100 * time.Hour, wantID: 0},
		{name: "refresh fails while valid", lifetime: time.Hour, at: 50 * time.Minute, failAgain: true, wantID: 0},
		{name: "refresh fails once expired", lifetime: time.Hour, at: 61 * time.Minute, failAgain: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := start
			clock := func() time.Time { return now }
			var opened []*fakeStorage
			open := func(context.Context) (blob.Storage, time.Time, error) {
				if len(opened) > 0 && tt.failAgain {
					return nil, time.Time{}, errSTS
				}
				st := &fakeStorage{id: len(opened)}
				opened = append(opened, st)
				var expires time.Time
				if tt.lifetime > 0 {
					expires = now.Add(tt.lifetime)
				}
				return st, expires, nil
			}
			ctx := context.Background()
			rs, err := newRefreshingStorage(ctx, blob.ConnectionInfo{Type: webIdentityStorageType}, open, clock)
			require.NoError(t, err)

			now = start.Add(tt.at)
			md, err := rs.GetMetadata(ctx, "x")
			if tt.wantErr {
				require.ErrorIs(t, err, errSTS)
				return
			}
			require.NoError(t, err)
			require.Equal(t, blob.ID(fmt.Sprint(tt.wantID)), md.BlobID)
			if tt.wantID > 0 {
				require.True(t, opened[0].closed, "the replaced storage is closed")
				// The new credentials are fresh: no second refresh.
				md, err = rs.GetMetadata(ctx, "x")
				require.NoError(t, err)
				require.Equal(t, blob.ID(fmt.Sprint(tt.wantID)), md.BlobID)
				require.Len(t, opened, 2)
			}
			require.Equal(t, webIdentityStorageType, rs.ConnectionInfo().Type)
		})
	}
}

func TestRefreshingStorageRetriesAfterAFailedRefresh(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	calls, fail := 0, true
	open := func(context.Context) (blob.Storage, time.Time, error) {
		calls++
		if calls > 1 && fail {
			return nil, time.Time{}, stderrors.New("sts down")
		}
		return &fakeStorage{id: calls}, now.Add(time.Hour), nil
	}
	ctx := context.Background()
	rs, err := newRefreshingStorage(ctx, blob.ConnectionInfo{}, open, func() time.Time { return now })
	require.NoError(t, err)
	now = start.Add(50 * time.Minute)
	_, err = rs.GetMetadata(ctx, "x")
	require.NoError(t, err)
	_, err = rs.GetMetadata(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, 2, calls, "no second attempt within refreshRetry")
	now, fail = now.Add(refreshRetry), false
	md, err := rs.GetMetadata(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, blob.ID("3"), md.BlobID)
}

const stsSuccess = `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>secret</SecretAccessKey>
      <SessionToken>session</SessionToken>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>`

const stsRefusal = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>
  <RequestId>r</RequestId>
</ErrorResponse>`

func TestWebIdentityRetrieve(t *testing.T) {
	// minio-go's IAM provider prefers the environment to the fields.
	for _, k := range []string{envWebIdentityTokenFile, envRoleARN, envRoleSessionName} {
		t.Setenv(k, "")
	}
	token := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(token, []byte("jwt-1"), 0o600))

	tests := []struct {
		name          string
		status        int
		body          string
		wantKind      error
		wantTransient bool
		wantMsg       string
	}{
		{name: "success", status: http.StatusOK, body: stsSuccess},
		{name: "untrusted issuer", status: http.StatusBadRequest, body: fmt.Sprintf(stsRefusal, "InvalidIdentityToken", "No OpenIDConnect provider found"),
			wantKind: ErrAccessDenied, wantMsg: "refused the web identity token"},
		{name: "wrong role", status: http.StatusForbidden, body: fmt.Sprintf(stsRefusal, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"),
			wantKind: ErrAccessDenied, wantMsg: "refused the web identity token"},
		{name: "throttled", status: http.StatusBadRequest, body: fmt.Sprintf(stsRefusal, "Throttling", "Rate exceeded"),
			wantKind: ErrUnavailable, wantTransient: true, wantMsg: "is unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var form map[string][]string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				require.NoError(t, r.ParseForm())
				form = r.PostForm
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			wi := webIdentity{STSEndpoint: srv.URL, RoleARN: "arn:aws:iam::1:role/velero", SessionName: "snapmove-w", TokenFile: token}

			creds, err := wi.retrieve()
			require.Equal(t, []string{"AssumeRoleWithWebIdentity"}, form["Action"])
			require.Equal(t, []string{"jwt-1"}, form["WebIdentityToken"])
			require.Equal(t, []string{wi.RoleARN}, form["RoleArn"])
			require.Equal(t, []string{"snapmove-w"}, form["RoleSessionName"])
			if tt.wantKind == nil {
				require.NoError(t, err)
				require.Equal(t, "ASIAEXAMPLE", creds.AccessKeyID)
				require.Equal(t, "secret", creds.SecretAccessKey)
				require.Equal(t, "session", creds.SessionToken)
				require.Equal(t, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), creds.Expiration)
				return
			}
			require.Error(t, err)
			classified := wi.classify(err, "s3://b/p/ at e")
			require.ErrorIs(t, classified, tt.wantKind)
			require.Equal(t, tt.wantTransient, IsTransient(classified))
			require.Equal(t, tt.wantTransient, datapath.IsTransient(classified))
			require.Contains(t, classified.Error(), tt.wantMsg)
			require.Contains(t, classified.Error(), srv.URL)
			require.Contains(t, classified.Error(), wi.RoleARN)
			require.NotContains(t, classified.Error(), "jwt-1")
		})
	}

	t.Run("token read on every retrieval", func(t *testing.T) {
		var tokens []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			require.NoError(t, r.ParseForm())
			tokens = append(tokens, r.PostForm.Get("WebIdentityToken"))
			_, _ = w.Write([]byte(stsSuccess))
		}))
		defer srv.Close()
		wi := webIdentity{STSEndpoint: srv.URL, RoleARN: "arn:aws:iam::1:role/velero", TokenFile: token}
		_, err := wi.retrieve()
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(token, []byte("jwt-2"), 0o600))
		_, err = wi.retrieve()
		require.NoError(t, err)
		require.Equal(t, []string{"jwt-1", "jwt-2"}, tokens)
	})

	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		wi := webIdentity{STSEndpoint: url, RoleARN: "arn:aws:iam::1:role/velero", TokenFile: token}
		_, err := wi.retrieve()
		require.Error(t, err)
		classified := wi.classify(err, "s3://b/p/ at e")
		require.ErrorIs(t, classified, ErrUnreachable)
		require.True(t, IsTransient(classified))
		require.Contains(t, classified.Error(), url)
	})

	t.Run("open refused is not retried as the store's error", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, stsRefusal, "InvalidIdentityToken", "bad")
		}))
		defer srv.Close()
		loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "b", Prefix: "p/", Endpoint: "127.0.0.1:1"}
		t.Setenv(envWebIdentityTokenFile, token)
		t.Setenv(envRoleARN, "arn:aws:iam::1:role/velero")
		t.Setenv(envEndpointURLSTS, srv.URL)
		_, err := openStorage(context.Background(), loc, false)
		require.ErrorIs(t, err, ErrAccessDenied)
		require.False(t, IsTransient(err))
		require.Contains(t, err.Error(), "STS at "+srv.URL+" refused")
	})
}

func TestWebIdentityConnectionInfoHasNoKeys(t *testing.T) {
	o := webIdentityOptions{WebIdentity: webIdentity{STSEndpoint: "https://sts.example", RoleARN: "arn:aws:iam::1:role/velero", TokenFile: "/t"}}
	o.S3.BucketName, o.S3.AccessKeyID, o.S3.SecretAccessKey, o.S3.SessionToken = "b", "ASIA", "secret", "session"
	rs, err := newRefreshingStorage(context.Background(), webIdentityInfo(o), func(context.Context) (blob.Storage, time.Time, error) {
		return &fakeStorage{}, time.Time{}, nil
	}, time.Now)
	require.NoError(t, err)
	b, err := json.Marshal(rs.ConnectionInfo())
	require.NoError(t, err)
	var back blob.ConnectionInfo
	require.NoError(t, json.Unmarshal(b, &back), "the type is registered with kopia")
	require.Equal(t, webIdentityStorageType, back.Type)
	got, ok := back.Config.(*webIdentityOptions)
	require.True(t, ok)
	require.Equal(t, o.WebIdentity, got.WebIdentity)
	require.Equal(t, "b", got.S3.BucketName)
	require.NotContains(t, string(b), "ASIA")
	require.NotContains(t, string(b), "secret\"")
	require.NotContains(t, string(b), "session\"")
}

package snapmetaapi

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// fakeServer streams fixed answers: two messages for GetMetadataAllocated, and for
// GetMetadataDelta an error code chosen by the request's token.
type fakeServer struct {
	UnimplementedSnapshotMetadataServer
}

func (fakeServer) GetMetadataAllocated(req *GetMetadataAllocatedRequest, stream grpc.ServerStreamingServer[GetMetadataAllocatedResponse]) error {
	for _, off := range []int64{0, 1 << 20} {
		err := stream.Send(&GetMetadataAllocatedResponse{
			BlockMetadataType:   BlockMetadataType_VARIABLE_LENGTH,
			VolumeCapacityBytes: 64 << 20,
			BlockMetadata:       []*BlockMetadata{{ByteOffset: off + req.GetStartingOffset(), SizeBytes: 4096}},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (fakeServer) GetMetadataDelta(req *GetMetadataDeltaRequest, _ grpc.ServerStreamingServer[GetMetadataDeltaResponse]) error {
	return status.Error(codes.PermissionDenied, "token "+req.GetSecurityToken()+" may not get volumesnapshots")
}

// TestStubsRoundTrip checks that the copied stubs work with this module's grpc and
// protobuf versions: the messages, the enum and the service's method names go over a
// real (in-memory) gRPC connection and back.
func TestStubsRoundTrip(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	RegisterSnapshotMetadataServer(srv, fakeServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := NewSnapshotMetadataClient(conn)
	ctx := context.Background()

	tests := []struct {
		name     string
		call     func() ([]*BlockMetadata, error)
		want     []int64 // byte offsets
		wantCode codes.Code
	}{{
		name: "allocated streams every message",
		call: func() ([]*BlockMetadata, error) {
			s, err := c.GetMetadataAllocated(ctx, &GetMetadataAllocatedRequest{SecurityToken: "t", Namespace: "ns", SnapshotName: "a", StartingOffset: 8192})
			if err != nil {
				return nil, err
			}
			var out []*BlockMetadata
			for {
				m, err := s.Recv()
				if err == io.EOF {
					return out, nil
				}
				if err != nil {
					return out, err
				}
				require.Equal(t, BlockMetadataType_VARIABLE_LENGTH, m.GetBlockMetadataType())
				require.EqualValues(t, 64<<20, m.GetVolumeCapacityBytes())
				out = append(out, m.GetBlockMetadata()...)
			}
		},
		want: []int64{8192, 1<<20 + 8192},
	}, {
		name: "delta carries the server's status code",
		call: func() ([]*BlockMetadata, error) {
			s, err := c.GetMetadataDelta(ctx, &GetMetadataDeltaRequest{SecurityToken: "nobody", BaseSnapshotId: "id", TargetSnapshotName: "b"})
			if err != nil {
				return nil, err
			}
			_, err = s.Recv()
			return nil, err
		},
		wantCode: codes.PermissionDenied,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			require.Equal(t, tt.wantCode, status.Code(err), "%v", err)
			var offsets []int64
			for _, b := range got {
				offsets = append(offsets, b.GetByteOffset())
			}
			require.Equal(t, tt.want, offsets)
		})
	}
	require.Equal(t, "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated", SnapshotMetadata_GetMetadataAllocated_FullMethodName)
}

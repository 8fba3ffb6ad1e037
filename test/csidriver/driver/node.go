package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NodeGetInfo returns the node ID and the volume limit (0: none).
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.cfg.NodeID, MaxVolumesPerNode: d.cfg.MaxVolumesPerNode}, nil
}

// NodeGetCapabilities advertises no staging and no stats: volumes are published
// directly, and the access modes include the single-node single/multi-writer pair.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{{
		Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{
			Type: csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		}},
	}}}, nil
}

// NodePublishVolume makes the volume appear at the target path: a filesystem volume's
// directory is bind-mounted onto a target directory; a block volume's image is attached
// to a loop device whose node is bind-mounted onto a target file. Reader access modes
// and readonly=true publish read-only (bind mount remounted ro, or a read-only loop
// device). Publishing again with the same arguments succeeds.
func (d *Driver) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is missing")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is missing")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is missing")
	}
	kind, err := capabilityKind(req.GetVolumeCapability())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	readOnly := req.GetReadonly() || isReaderMode(req.GetVolumeCapability().GetAccessMode().GetMode())
	target := filepath.Clean(req.GetTargetPath())

	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.state.Volumes[req.GetVolumeId()]
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	if v.Kind != kind {
		return nil, status.Errorf(codes.InvalidArgument, "volume %s is a %s volume and cannot be published as %s", v.ID, v.Kind, kind)
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "checking target %s: %v", target, err)
	}
	if p := v.Publications[target]; p != nil {
		if mounted {
			if p.ReadOnly != readOnly {
				return nil, status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with readonly=%v", v.ID, target, p.ReadOnly)
			}
			return &csi.NodePublishVolumeResponse{}, nil
		}
		// Recorded but not mounted (e.g. the node rebooted): forget it and publish anew.
		if err := d.forgetPublication(v, target, p); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	} else if mounted {
		return nil, status.Errorf(codes.FailedPrecondition, "target %s is already a mount point not owned by volume %s", target, v.ID)
	}

	p := &publication{ReadOnly: readOnly}
	if err := d.publish(v, target, p); err != nil {
		return nil, status.Errorf(codes.Internal, "publishing volume %s at %s: %v", v.ID, target, err)
	}
	if v.Publications == nil {
		v.Publications = map[string]*publication{}
	}
	v.Publications[target] = p
	if err := d.persist(); err != nil {
		delete(v.Publications, target)
		if uerr := d.unpublish(v, target, p); uerr != nil {
			err = fmt.Errorf("%w (and undoing the publication failed: %v)", err, uerr)
		}
		return nil, status.Errorf(codes.Internal, "saving state: %v", err)
	}
	d.log.Info("volume published", "volume", v.ID, "target", target, "readOnly", readOnly, "loopDevice", p.LoopDevice)
	return &csi.NodePublishVolumeResponse{}, nil
}

// publish creates the target (directory or file) and mounts the volume there, filling
// p.LoopDevice for block volumes. On failure it leaves nothing behind.
func (d *Driver) publish(v *volume, target string, p *publication) (err error) {
	created, err := createTarget(target, v.Kind)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && created {
			os.Remove(target)
		}
	}()
	if v.Kind == kindFilesystem {
		return bindMount(d.volumePath(v), target, p.ReadOnly)
	}
	dev, err := attachLoop(d.volumePath(v), p.ReadOnly)
	if err != nil {
		return err
	}
	if err := bindMount(dev, target, false); err != nil {
		if derr := detachLoop(dev, d.volumePath(v)); derr != nil {
			return fmt.Errorf("%w (and detaching %s failed: %v)", err, dev, derr)
		}
		return err
	}
	p.LoopDevice = dev
	return nil
}

// createTarget makes the target a directory (filesystem) or a regular file (block),
// creating parent directories, and reports whether it created it.
func createTarget(target string, kind volumeKind) (bool, error) {
	if _, err := os.Lstat(target); err == nil {
		return false, nil
	} else if !os.IsNotExist(err) {
		return false, err
	}
	if kind == kindFilesystem {
		return true, os.MkdirAll(target, 0o750)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return false, err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o660)
	if err != nil {
		return false, err
	}
	return true, f.Close()
}

// NodeUnpublishVolume unmounts the target, removes it and detaches the loop device of a
// block volume. Unpublishing a target that is not published succeeds.
func (d *Driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is missing")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is missing")
	}
	target := filepath.Clean(req.GetTargetPath())

	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.state.Volumes[req.GetVolumeId()]
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	p := v.Publications[target]
	if p == nil {
		p = &publication{}
	}
	if err := d.unpublish(v, target, p); err != nil {
		return nil, status.Errorf(codes.Internal, "unpublishing volume %s from %s: %v", v.ID, target, err)
	}
	if _, ok := v.Publications[target]; ok {
		delete(v.Publications, target)
		if err := d.persist(); err != nil {
			return nil, status.Errorf(codes.Internal, "saving state: %v", err)
		}
	}
	d.log.Info("volume unpublished", "volume", v.ID, "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// unpublish unmounts and removes target and detaches p's loop device; each step is
// skipped when already done.
func (d *Driver) unpublish(v *volume, target string, p *publication) error {
	if err := unmountAll(target); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing target: %w", err)
	}
	if p.LoopDevice != "" {
		if err := detachLoop(p.LoopDevice, d.volumePath(v)); err != nil {
			return err
		}
	}
	return nil
}

// forgetPublication undoes a stale publication record (target not mounted).
func (d *Driver) forgetPublication(v *volume, target string, p *publication) error {
	if p.LoopDevice != "" {
		if err := detachLoop(p.LoopDevice, d.volumePath(v)); err != nil {
			return fmt.Errorf("detaching stale loop device %s of volume %s: %w", p.LoopDevice, v.ID, err)
		}
	}
	delete(v.Publications, target)
	return nil
}

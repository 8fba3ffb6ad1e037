package driver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// volumeKind says how a volume's data is stored and handed to a pod.
type volumeKind string

const (
	kindFilesystem volumeKind = "filesystem" // a directory, bind-mounted into the pod
	kindBlock      volumeKind = "block"      // a sparse image file, exposed through a loop device
)

// volume is one provisioned volume.
type volume struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Kind          volumeKind        `json:"kind"`
	CapacityBytes int64             `json:"capacityBytes"`
	Parameters    map[string]string `json:"parameters,omitempty"`
	// At most one of these is set: the content source the volume was created from.
	SourceSnapshotID string    `json:"sourceSnapshotID,omitempty"`
	SourceVolumeID   string    `json:"sourceVolumeID,omitempty"`
	CreatedAt        time.Time `json:"createdAt"`
	// Publications by target path.
	Publications map[string]*publication `json:"publications,omitempty"`
}

// publication is one NodePublishVolume that has not been undone yet.
type publication struct {
	ReadOnly bool `json:"readOnly"`
	// LoopDevice is the loop device attached for a block volume ("" for filesystem volumes).
	LoopDevice string `json:"loopDevice,omitempty"`
}

// snapshot is one snapshot: a full copy of its source volume's data.
type snapshot struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	SourceVolumeID string     `json:"sourceVolumeID"`
	Kind           volumeKind `json:"kind"`
	// SizeBytes is the restore size: the source volume's capacity when the snapshot was taken.
	SizeBytes  int64             `json:"sizeBytes"`
	Parameters map[string]string `json:"parameters,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
}

// state is everything the driver remembers; it is persisted as <statedir>/state.json.
type state struct {
	Volumes   map[string]*volume   `json:"volumes"`
	Snapshots map[string]*snapshot `json:"snapshots"`
}

func newState() *state {
	return &state{Volumes: map[string]*volume{}, Snapshots: map[string]*snapshot{}}
}

// loadState reads path; a missing file is an empty state.
func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state file %s: %w", path, err)
	}
	st := newState()
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("parsing state file %s: %w", path, err)
	}
	if st.Volumes == nil {
		st.Volumes = map[string]*volume{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[string]*snapshot{}
	}
	return st, nil
}

// save writes the state to path atomically (temp file, fsync, rename).
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*.json")
	if err != nil {
		return fmt.Errorf("creating temporary state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing state file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing state file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing state file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming state file into %s: %w", path, err)
	}
	return nil
}

func (s *state) volumeByName(name string) *volume {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func (s *state) snapshotByName(name string) *snapshot {
	for _, sn := range s.Snapshots {
		if sn.Name == name {
			return sn
		}
	}
	return nil
}

// sortedVolumes returns the volumes ordered by ID, the order ListVolumes pages through.
func (s *state) sortedVolumes() []*volume {
	out := make([]*volume, 0, len(s.Volumes))
	for _, v := range s.Volumes {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// sortedSnapshots returns the snapshots ordered by ID, the order ListSnapshots pages through.
func (s *state) sortedSnapshots() []*snapshot {
	out := make([]*snapshot, 0, len(s.Snapshots))
	for _, sn := range s.Snapshots {
		out = append(out, sn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// newID returns a random UUID (version 4) string; IDs are safe as single path elements.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

package snapmeta

import (
	"math"

	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	api "github.com/snapmove/snapmove/internal/snapmetaapi"
)

// ranges gathers the tuples of one call's messages, over all its attempts, into coalesced
// ranges, and checks what the stream promises: one block metadata type and one capacity
// in every message, tuples of positive size in increasing order (a resumed stream may
// repeat the end of what it sent), one size for FIXED_LENGTH.
type ranges struct {
	typ      api.BlockMetadataType
	capacity int64
	fixed    int64 // FIXED_LENGTH: the size of every tuple
	messages int
	// next is the offset after the last tuple received, where a resumed stream starts.
	next int64
	// out holds the ranges so far, cut at the capacity; adjacent and overlapping tuples
	// extend its last range, so it grows with the separate runs, not with the tuples.
	out []datapath.ByteRange
}

// add adds the tuples of one message.
func (r *ranges) add(m response) error {
	typ, capacity := m.GetBlockMetadataType(), m.GetVolumeCapacityBytes()
	if r.messages == 0 {
		if typ != api.BlockMetadataType_FIXED_LENGTH && typ != api.BlockMetadataType_VARIABLE_LENGTH {
			return errors.Errorf("unknown block metadata type %s", typ)
		}
		if capacity <= 0 {
			return errors.Errorf("the service reported a volume capacity of %d bytes", capacity)
		}
		r.typ, r.capacity = typ, capacity
	}
	r.messages++
	if typ != r.typ {
		return errors.Errorf("the block metadata type changed from %s to %s in message %d", r.typ, typ, r.messages)
	}
	if capacity != r.capacity {
		return errors.Errorf("the volume capacity changed from %d to %d bytes in message %d", r.capacity, capacity, r.messages)
	}
	for _, b := range m.GetBlockMetadata() {
		off, size := b.GetByteOffset(), b.GetSizeBytes()
		if off < 0 || size <= 0 || size > math.MaxInt64-off {
			return errors.Errorf("invalid range of %d bytes at offset %d in message %d", size, off, r.messages)
		}
		if typ == api.BlockMetadataType_FIXED_LENGTH {
			if r.fixed == 0 {
				r.fixed = size
			} else if size != r.fixed {
				return errors.Errorf("a FIXED_LENGTH range of %d bytes at offset %d after ranges of %d bytes", size, off, r.fixed)
			}
		}
		n := len(r.out)
		if n > 0 && off < r.out[n-1].Offset {
			return errors.Errorf("range at offset %d after one at offset %d: out of order", off, r.out[n-1].Offset)
		}
		end := off + size
		r.next = max(r.next, end)
		end = min(end, r.capacity)
		switch {
		case off >= end: // past the end of the volume
		case n > 0 && off <= r.out[n-1].Offset+r.out[n-1].Length:
			last := &r.out[n-1]
			last.Length = max(last.Length, end-last.Offset)
		default:
			r.out = append(r.out, datapath.ByteRange{Offset: off, Length: end - off})
		}
	}
	return nil
}

package harness

import (
	"sync/atomic"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Tombstones counts PodCertificateRequest deletions that reached the kubelet manager as a
// cache.DeletedFinalStateUnknown (a deletion missed while the watch was down, found on relist).
var Tombstones atomic.Int64

// tombstoneSafe wraps the manager's PCR informer. Upstream's IssuingManager (1.35.4 and 1.37.2,
// podcertificatemanager.go, the PCR informer's DeleteFunc) asserts obj.(*PodCertificateRequest)
// and panics on a tombstone, which takes the whole kubelet down; the harness unwraps the
// tombstone (and logs it) so that one missed deletion does not end the run.
type tombstoneSafe struct{ cache.SharedIndexInformer }

func (i tombstoneSafe) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandler(unwrapTombstones{h})
}

type unwrapTombstones struct{ cache.ResourceEventHandler }

func (u unwrapTombstones) OnDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		Tombstones.Add(1)
		klog.InfoS("upstream kubelet bug avoided: PodCertificateRequest tombstone in the manager's DeleteFunc would panic", "key", t.Key)
		obj = t.Obj
	}
	u.ResourceEventHandler.OnDelete(obj)
}

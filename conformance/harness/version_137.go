//go:build !k8s135

package harness

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	certinformers "k8s.io/client-go/informers/certificates/v1"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/kubernetes/pkg/controller/certificates/cleaner"
	"k8s.io/kubernetes/pkg/kubelet/podcertificate"
	"k8s.io/utils/clock"
)

// Release is the Kubernetes release this build embeds.
const Release = "v1.37.2"

// ExtraAPIServerFlags: PodCertificateRequest, ClusterTrustBundle and ClusterTrustBundleProjection
// are GA and default-on in 1.37 (locked only from 1.38), so no gate or runtime-config is needed.
var ExtraAPIServerFlags = []string{}

func newManager(kc kubernetes.Interface, pm podcertificate.PodManager, rec record.EventRecorder,
	pcrs informers.SharedInformerFactory, nodes informers.SharedInformerFactory, node string) *podcertificate.IssuingManager {
	return podcertificate.NewIssuingManager(kc, pm, rec,
		safePCRInformer{pcrs.Certificates().V1().PodCertificateRequests()}, nodes.Core().V1().Nodes(),
		types.NodeName(node), clock.RealClock{})
}

func newCleaner(kc kubernetes.Interface, f informers.SharedInformerFactory, threshold, poll time.Duration) *cleaner.PCRCleanerController {
	return cleaner.NewPCRCleanerController(kc, f.Certificates().V1().PodCertificateRequests(),
		clock.RealClock{}, threshold, poll)
}

// safePCRInformer hands the manager an informer whose handlers never see a tombstone
// (see tombstoneSafe).
type safePCRInformer struct {
	certinformers.PodCertificateRequestInformer
}

func (s safePCRInformer) Informer() cache.SharedIndexInformer {
	return tombstoneSafe{s.PodCertificateRequestInformer.Informer()}
}

func (s safePCRInformer) Lister() certlisters.PodCertificateRequestLister {
	return s.PodCertificateRequestInformer.Lister()
}

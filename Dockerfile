# podcert-signer: one static binary in an empty image (no shell, no libc, no package manager).
#
# The binary is built on the host and copied in, so the image builds without a registry and
# without a compiler inside: scripts/build-images.sh builds it (static: musl, or glibc with
# +crt-static) and stages it as <context>/podcert-signer, then runs
#   buildah bud --isolation chroot --storage-driver vfs -t podcert-signer:dev -f Dockerfile target/image-context
# (or `docker build -f Dockerfile target/image-context`).
FROM scratch
LABEL org.opencontainers.image.title="podcert-signer" \
      org.opencontainers.image.description="Kubernetes PodCertificate signer issuing SPIFFE X.509-SVIDs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY podcert-signer /podcert-signer
# The "nonroot" user of distroless; the chart runs it with the same IDs.
USER 65532:65532
ENTRYPOINT ["/podcert-signer"]

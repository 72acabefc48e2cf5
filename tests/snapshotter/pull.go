// pull: pulls an image through containerd's own client path for remote snapshotters (what CRI and
// nerdctl do): layers are unpacked by the named snapshotter, each Prepare carrying the
// containerd.io/snapshot/cri.* labels, and a layer is fetched only when the snapshotter does not
// already have it. Built from Debian's Go sources (GO111MODULE=off GOPATH=/usr/share/gocode).
//
//	pull SOCKET NAMESPACE SNAPSHOTTER REF
//
// Prints one JSON line: the image's target digest and the layer blobs the content store holds
// afterwards (the layers containerd downloaded).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: pull SOCKET NAMESPACE SNAPSHOTTER REF")
		os.Exit(2)
	}
	sock, ns, sn, ref := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	client, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "pull: connect:", err)
		os.Exit(1)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 5*time.Minute)
	defer cancel()
	resolver := docker.NewResolver(docker.ResolverOptions{PlainHTTP: true})
	img, err := client.Pull(ctx, ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(sn),
		containerd.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pull:", err)
		os.Exit(1)
	}
	var held []string
	if err := client.ContentStore().Walk(ctx, func(i content.Info) error {
		held = append(held, i.Digest.String())
		return nil
	}); err != nil {
		fmt.Fprintln(os.Stderr, "pull: content walk:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"name":    img.Name(),
		"target":  img.Target().Digest.String(),
		"content": held,
	})
	fmt.Println(string(out))
}

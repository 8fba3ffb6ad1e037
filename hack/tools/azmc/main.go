// azmc creates a blob container on an Azure Blob endpoint (Azurite on the stack) if it does not exist yet,
// authenticating with the account's shared key, as kopia's and Velero's azure storage do.
//
//	usage: azmc SERVICE_URL ACCOUNT KEY CONTAINER
//
// SERVICE_URL is the account's blob service, e.g. http://devstoreaccount1.blob.localhost:10000/.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: azmc SERVICE_URL ACCOUNT KEY CONTAINER")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "azmc:", err)
		os.Exit(1)
	}
}

func run(serviceURL, account, key, container string) error {
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		return fmt.Errorf("reading the key of account %s: %w", account, err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(serviceURL, cred, nil)
	if err != nil {
		return fmt.Errorf("creating Azure Blob client for %s: %w", serviceURL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateContainer(ctx, container, nil); err != nil {
		if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			fmt.Fprintf(os.Stderr, "container %s exists\n", container)
			return nil
		}
		return fmt.Errorf("creating container %s: %w", container, err)
	}
	fmt.Fprintf(os.Stderr, "container %s created\n", container)
	return nil
}

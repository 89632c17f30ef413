package main

import (
	"fmt"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/guest"
)

func profilesMain() int {
	fmt.Println("device profiles:")
	for _, p := range device.Profiles() {
		fmt.Printf("  %-22s %s\n", p.Name, p.Source)
	}
	fmt.Println("guest kernel profiles:")
	for _, p := range guest.Profiles() {
		fmt.Printf("  %-22s %s\n", p.Name, p.Source)
		fmt.Printf("  %-22s releases: %s\n", "", p.Releases)
	}
	return 0
}

package lab

import "github.com/vsocklab/vsocklab/emu"

func cfgSeed(seed uint64) emu.Config   { return emu.Config{Seed: seed} }
func cfgDevice(name string) emu.Config { return emu.Config{Device: name} }

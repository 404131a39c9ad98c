#!/usr/bin/env node
// The `quire` command. Quire is written in TypeScript and runs through tsx's loader.
import { register } from 'tsx/esm/api'

register()
await import('./main.ts')

#!/usr/bin/env node
/** The `pneumo-native` executable: parses argv and sets the exit code. */
import { runCli } from './app.js';

process.exitCode = await runCli(process.argv.slice(2));

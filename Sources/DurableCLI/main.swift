import DurableCommands

await DurableApp.main(name: "durable")

"""The Discord bot (discord.py 2): a Cog per feature, slash commands, persistent
buttons; answers go through the same core flow as on Telegram."""

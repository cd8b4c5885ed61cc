"""One call's media: RTP with the phone, the agent link, and the messages between them and the call."""
